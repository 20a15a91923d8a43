#!/usr/bin/env node
// run_queries.mjs: drive a Trino/Presto endpoint (qdispatchd's query proxy or a
// qdcoordsim coordinator) with the real npm clients, `trino-client` and
// `presto-client`, and check every answer against what the simulator promises.
//
// Each query is `SELECT ... /* sim: rows=R page_rows=P ... */`: the simulator
// returns R rows of one varchar column c0 whose values are a documented
// function of the row number (docs/coordsim.md), so a proxy that drops, repeats,
// reorders or corrupts a page is caught here. Every K-th query is canceled after
// its first data page, with the client's own cancel path (trino-client: DELETE
// /v1/query/<id>; presto-client: DELETE <nextUri> in absolute form), and must
// then be reported canceled (USER_CANCELED) by the server.
//
// The summary (JSON with --json) counts ok / failed / canceled queries, rows,
// mismatches and latency percentiles. The exit code is 0 only when every query
// did what it should: 1 on any failure or mismatch (with --allow-failures, on
// mismatches only: a failed query then just counts as failed), 2 on bad usage.
// Run with --help for the options.

import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { Trino } from 'trino-client';
import prestoClient from 'presto-client';

const USAGE = `usage: run_queries.mjs [OPTIONS]

Runs N queries (C at a time) through trino-client or presto-client against
--server and verifies every row against the simulator's deterministic values.

options:
  --client trino|presto   which npm client (default trino)
  --engine trino|presto   headers presto-client sends: X-Trino-* or X-Presto-*
                          (default presto; trino-client always sends X-Trino-*)
  --server URL            http://HOST:PORT (default $QD_URL, else
                          http://127.0.0.1:8080)
  --queries N             queries in total (default 20)
  --concurrency C         queries in flight at once (default 4)
  --rows R                rows per query (default 10)
  --page-rows P           rows per data page (default 4)
  --row-bytes B           bytes of each row's value (default: the simulator's)
  --sim "k=v ..."         more simulator directives (e.g. "queue_ms=50 run_ms=20")
  --cancel-every K        cancel every K-th query (K, 2K, ...) after its first
                          data page and check it ends USER_CANCELED (0: never;
                          needs R > P, so the query has a page left to cancel)
  --user U, --source S    the client's user and source (default qd-test,
                          qd-clients); with --users N the user of query i is
                          U-(i mod N)
  --users N               spread the queries over N users (default 1)
  --check-info            after each query, GET /v1/query/<id> and check the
                          server saw the query's text, user and source
  --timeout-s T           a query that takes longer fails (default 60)
  --allow-failures        failed queries do not fail the run (mismatches still do)
  --details               list every query in the JSON (id, state, rows, error)
  --json                  print only the JSON summary on stdout
  -h, --help              this text

exit: 0 all good, 1 a query failed or returned wrong data, 2 bad usage.`;

function usageError(msg) {
	process.stderr.write(`run_queries: ${msg} (see --help)\n`);
	process.exit(2);
}

function intOption(values, name, dflt, min) {
	const raw = values[name];
	if (raw === undefined)
		return dflt;
	if (!/^[0-9]+$/.test(raw))
		usageError(`--${name} must be a non-negative integer, got '${raw}'`);
	const n = Number(raw);
	if (n < min)
		usageError(`--${name} must be at least ${min}`);
	return n;
}

function parseOptions() {
	let parsed;
	try {
		parsed = parseArgs({
			options: {
				client: { type: 'string' }, engine: { type: 'string' },
				server: { type: 'string' }, queries: { type: 'string' },
				concurrency: { type: 'string' }, rows: { type: 'string' },
				'page-rows': { type: 'string' }, 'row-bytes': { type: 'string' },
				sim: { type: 'string' }, 'cancel-every': { type: 'string' },
				user: { type: 'string' }, source: { type: 'string' },
				users: { type: 'string' }, 'check-info': { type: 'boolean' },
				'timeout-s': { type: 'string' }, 'allow-failures': { type: 'boolean' },
				details: { type: 'boolean' }, json: { type: 'boolean' },
				help: { type: 'boolean', short: 'h' },
			},
			allowPositionals: false,
		});
	} catch (e) {
		usageError(e.message);
	}
	const v = parsed.values;
	if (v.help) {
		process.stdout.write(USAGE + '\n');
		process.exit(0);
	}
	const o = {
		client: v.client ?? 'trino',
		engine: v.engine ?? 'presto',
		server: v.server ?? process.env.QD_URL ?? 'http://127.0.0.1:8080',
		queries: intOption(v, 'queries', 20, 1),
		concurrency: intOption(v, 'concurrency', 4, 1),
		rows: intOption(v, 'rows', 10, 0),
		pageRows: intOption(v, 'page-rows', 4, 1),
		rowBytes: v['row-bytes'] === undefined ? null : intOption(v, 'row-bytes', 0, 1),
		sim: v.sim ?? '',
		cancelEvery: intOption(v, 'cancel-every', 0, 0),
		user: v.user ?? 'qd-test',
		source: v.source ?? 'qd-clients',
		users: intOption(v, 'users', 1, 1),
		checkInfo: !!v['check-info'],
		timeoutMs: intOption(v, 'timeout-s', 60, 1) * 1000,
		allowFailures: !!v['allow-failures'],
		details: !!v.details,
		json: !!v.json,
	};
	if (o.client !== 'trino' && o.client !== 'presto')
		usageError(`--client must be trino or presto, got '${o.client}'`);
	if (o.engine !== 'trino' && o.engine !== 'presto')
		usageError(`--engine must be trino or presto, got '${o.engine}'`);
	let url;
	try {
		url = new URL(o.server);
	} catch {
		usageError(`--server '${o.server}' is not a URL`);
	}
	if (url.protocol !== 'http:' || url.pathname !== '/' || url.search !== '')
		usageError(`--server must be http://HOST[:PORT], got '${o.server}'`);
	o.url = url;
	if (!/^[a-z_]+=[0-9a-z_]+( +[a-z_]+=[0-9a-z_]+)*$|^$/.test(o.sim.trim()))
		usageError(`--sim must be "key=value ..." words, got '${o.sim}'`);
	if (/\b(rows|page_rows|row_bytes)=/.test(o.sim))
		usageError('--sim must not set rows, page_rows or row_bytes: use their options');
	if (o.cancelEvery > 0 && o.rows <= o.pageRows)
		usageError('--cancel-every needs --rows > --page-rows: a canceled query must have a page left');
	return o;
}

// The simulator's row values (docs/coordsim.md; tests/coordsim/sim_body.c):
// row i (0-based) of a query is the first row_bytes (default 8) characters of
// "<i in decimal>:" followed by the alphabet 0-9a-z repeated forever, starting
// at character (i mod 36). Row 0 with 8 bytes is "0:012345", row 37 "37:12345".
const DEFAULT_ROW_BYTES = 8;
const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

function expectedValue(i, rowBytes) {
	const head = `${i}:`;
	if (head.length >= rowBytes)
		return head.slice(0, rowBytes);
	const fill = rowBytes - head.length;
	const k = i % ALPHABET.length;
	const turn = ALPHABET.slice(k) + ALPHABET.slice(0, k);
	return head + turn.repeat(Math.ceil(fill / ALPHABET.length)).slice(0, fill);
}

function querySql(o, index) {
	const words = [`rows=${o.rows}`, `page_rows=${o.pageRows}`];
	if (o.rowBytes !== null)
		words.push(`row_bytes=${o.rowBytes}`);
	if (o.sim.trim() !== '')
		words.push(o.sim.trim());
	return `SELECT c0 FROM qdispatch_test /* q${index} */ /* sim: ${words.join(' ')} */`;
}

// One query's record: what happened and what was wrong with it.
class QueryRun {
	constructor(o, index) {
		this.index = index;
		this.sql = querySql(o, index);
		this.user = o.users > 1 ? `${o.user}-${index % o.users}` : o.user;
		this.cancel = o.cancelEvery > 0 && (index + 1) % o.cancelEvery === 0;
		this.id = null;
		this.state = null;
		this.rows = 0;
		this.pages = 0;
		this.outcome = null; // ok | canceled | failed | mismatch
		this.error = null;
		this.mismatch = null;
		this.columnsSeen = false;
		this.hash = createHash('sha256');
		this.started = performance.now();
		this.latencyMs = null;
	}

	// Checks one page of rows (arrays) in order; the first mismatch sticks.
	checkRows(o, data, columns) {
		if (columns && !this.columnsSeen) {
			this.columnsSeen = true;
			if (!Array.isArray(columns) || columns.length !== 1 || columns[0].name !== 'c0' ||
			    !/^varchar/.test(columns[0].type))
				this.setMismatch(`columns ${JSON.stringify(columns)}, expected one varchar c0`);
		}
		if (!Array.isArray(data)) {
			this.setMismatch(`data is not an array: ${JSON.stringify(data).slice(0, 100)}`);
			return;
		}
		if (data.length > 0 && !this.columnsSeen)
			this.setMismatch('data before any columns');
		if (data.length > o.pageRows)
			this.setMismatch(`a page of ${data.length} rows, page_rows is ${o.pageRows}`);
		this.pages++;
		const rowBytes = o.rowBytes ?? DEFAULT_ROW_BYTES;
		for (const row of data) {
			const want = expectedValue(this.rows, rowBytes);
			if (!Array.isArray(row) || row.length !== 1 || row[0] !== want) {
				const got = JSON.stringify(row);
				this.setMismatch(`row ${this.rows} is ${got.length > 80 ? got.slice(0, 80) + '...' : got}` +
					`, expected ["${want.length > 60 ? want.slice(0, 60) + '...' : want}"]`);
			}
			this.hash.update(String(Array.isArray(row) ? row[0] : row));
			this.rows++;
		}
	}

	// Every page names the query. A query queued at qdispatchd first gets a placeholder
	// id ("qdq_..."); once dispatched, the coordinator's id takes over, exactly once
	// (the placeholder keeps working: it is an alias). Any other change is a mismatch.
	checkId(id) {
		if (id === this.id || id === this.realId)
			return;
		if (this.realId === undefined && typeof this.id === 'string' && this.id.startsWith('qdq_') &&
		    typeof id === 'string' && !id.startsWith('qdq_')) {
			this.realId = id;
			return;
		}
		this.setMismatch(`a page of query ${id} inside query ${this.id}`);
	}

	setMismatch(msg) {
		if (this.mismatch === null)
			this.mismatch = msg;
	}

	finish(outcome, error) {
		if (this.outcome !== null)
			return;
		this.latencyMs = performance.now() - this.started;
		this.outcome = this.mismatch !== null ? 'mismatch' : outcome;
		if (error !== undefined && error !== null)
			this.error = error;
	}
}

function describeAxiosError(e) {
	if (e && e.response) {
		let body = e.response.data;
		if (typeof body !== 'string')
			body = JSON.stringify(body);
		return `HTTP ${e.response.status} on ${e.config?.method?.toUpperCase() ?? '?'} ` +
			`${e.config?.url ?? '?'}: ${String(body).slice(0, 300)}`;
	}
	return `${e?.code ? e.code + ': ' : ''}${e?.message ?? String(e)}`;
}

function describeTrinoError(err) {
	return `${err.errorName ?? '?'} (${err.errorType ?? '?'} ${err.errorCode ?? '?'}): ${err.message ?? ''}`;
}

function isUserCanceled(state, error) {
	return state === 'CANCELED' ||
		(error && (error.errorName === 'USER_CANCELED' || error.errorName === 'USER_CANCELLED'));
}

// Checks GET /v1/query/<id>: the query's text, user and source as the server
// saw them and, for a canceled query, that it ended USER_CANCELED.
function checkQueryInfo(q, info, canceled) {
	if (info && info.fetchError) {
		q.setMismatch(`GET /v1/query/${q.id} after the query ${canceled ? 'was canceled' : 'finished'}: ` +
			info.fetchError);
		return;
	}
	if (!info || typeof info !== 'object') {
		q.setMismatch(`GET /v1/query/${q.id} returned ${JSON.stringify(info)?.slice(0, 100)}`);
		return;
	}
	if (info.queryId !== q.id && info.queryId !== q.realId)
		q.setMismatch(`GET /v1/query/${q.id} names query ${info.queryId}`);
	if (info.query !== undefined && info.query !== q.sql)
		q.setMismatch(`the server saw the query text ${JSON.stringify(info.query).slice(0, 120)}`);
	if (info.session && info.session.user !== q.user)
		q.setMismatch(`the server saw user '${info.session.user}', sent '${q.user}'`);
	if (info.session && q.source !== undefined && info.session.source !== q.source)
		q.setMismatch(`the server saw source '${info.session.source}', sent '${q.source}'`);
	if (canceled) {
		const err = info.errorCode ?? info.failureInfo ?? null;
		const name = typeof info.errorCode === 'object' ? info.errorCode?.name : info.errorType;
		if (!(info.state === 'CANCELED' || name === 'USER_CANCELED' ||
		      (info.state === 'FAILED' && JSON.stringify(err ?? '').includes('USER_CANCELED'))))
			q.setMismatch(`canceled, but GET /v1/query/${q.id} says state ${info.state} ` +
				`${JSON.stringify(err ?? null).slice(0, 100)}`);
	} else if (info.state !== 'FINISHED') {
		q.setMismatch(`finished, but GET /v1/query/${q.id} says state ${info.state}`);
	}
}

// ---- trino-client -------------------------------------------------------
// trino-client follows nextUri with axios (Node's global keep-alive agent),
// skips pages without data inside next(), retries nothing, and reports a
// FAILED query only through the `error` field of the last QueryResults.

async function trinoQuery(o, trino, q) {
	let iter;
	try {
		iter = await trino.query({ query: q.sql, user: q.user });
	} catch (e) {
		q.finish('failed', `POST /v1/statement: ${describeAxiosError(e)}`);
		return;
	}
	// The POST's own QueryResults (QUEUED) is not yielded by the iterator.
	const first = iter.iter.queryResult;
	q.id = first?.id ?? null;
	q.state = first?.stats?.state ?? null;
	if (!q.id || !first.nextUri || !first.infoUri)
		q.setMismatch(`POST answer lacks id/nextUri/infoUri: ${JSON.stringify(first).slice(0, 200)}`);
	let last = first;
	let canceled = false;
	try {
		for (let pages = 0; ; pages++) {
			if (pages > 100000)
				throw new Error('more than 100000 pages');
			const r = await iter.next();
			last = r.value;
			q.checkId(last.id);
			q.state = last.stats?.state ?? q.state;
			if (r.done)
				break;
			if (last.data)
				q.checkRows(o, last.data, last.columns);
			if (last.error)
				break;
			if (q.cancel && !canceled) {
				if (!last.nextUri) {
					q.setMismatch('the first data page was the last one: nothing left to cancel');
					break;
				}
				await trino.cancel(q.id);
				canceled = true;
				// A canceled query's next poll answers it ended.
			}
		}
	} catch (e) {
		q.finish('failed', `${canceled ? 'after cancel: ' : ''}${describeAxiosError(e)}`);
		return;
	}
	if (canceled) {
		if (!isUserCanceled(last.stats?.state, last.error)) {
			q.setMismatch(`canceled, but the last page says state ${last.stats?.state}` +
				`${last.error ? ' ' + describeTrinoError(last.error) : ''}`);
		}
		if (o.checkInfo)
			checkQueryInfo(q, await trino.queryInfo(q.id).catch(e => ({ fetchError: describeAxiosError(e) })), true);
		q.finish('canceled');
		return;
	}
	if (last.error) {
		q.finish('failed', `query ${q.id} ${last.stats?.state}: ${describeTrinoError(last.error)}`);
		return;
	}
	if (last.stats?.state !== 'FINISHED')
		q.setMismatch(`the last page says state ${last.stats?.state}, expected FINISHED`);
	if (q.rows !== o.rows)
		q.setMismatch(`${q.rows} rows, expected ${o.rows}`);
	if (o.checkInfo) {
		const info = await trino.queryInfo(q.id).catch(e => ({ fetchError: describeAxiosError(e) }));
		checkQueryInfo(q, info, false);
	}
	q.finish('ok');
}

// ---- presto-client ------------------------------------------------------
// presto-client opens a new connection per request (keepAlive: false, sends
// Connection: close), POSTs the SQL chunked, polls every checkInterval ms,
// retries 502/503/504 forever every 50-100 ms (the POST too), and cancels by
// calling the `cancel` hook before each poll: true sends `DELETE <nextUri>`
// with the absolute URL as the request target to the configured host.

function prestoExecute(client, args) {
	return new Promise(resolve => {
		client.execute({
			...args,
			success: (error, stats) => resolve({ ok: true, stats }),
			error: error => resolve({ ok: false, error }),
		});
	});
}

function prestoQueryInfo(client, id) {
	return new Promise(resolve => {
		client.query(id, (error, info) => resolve(error ?
			{ fetchError: `${error.message} [HTTP ${error.code}]${error.error ? ': ' + error.error.message : ''}` } : info));
	});
}

async function prestoQuery(o, client, q) {
	let lastStats = null;
	let canceled = false;
	let retries = 0;
	const res = await prestoExecute(client, {
		query: q.sql,
		user: q.user,
		timeout: o.timeoutMs / 1000,
		state: (error, id, stats) => {
			if (q.id === null)
				q.id = id;
			else
				q.checkId(id);
			q.state = stats?.state ?? q.state;
			lastStats = stats;
		},
		columns: () => {},
		data: (error, data, columns, stats) => {
			q.checkRows(o, data, columns);
			q.state = stats?.state ?? q.state;
			lastStats = stats;
		},
		retry: () => { retries++; },
		cancel: () => {
			if (q.cancel && q.pages > 0 && !canceled) {
				canceled = true;
				return true;
			}
			return false;
		},
	});
	q.retries = retries;
	if (canceled) {
		// presto-client reports a successful cancel as an error with this text.
		if (res.ok || res.error?.message !== 'query fetch canceled by operation') {
			q.finish('failed', `cancel: ${res.ok ? 'the query finished' : res.error?.message}` +
				`${res.error?.error ? ' (' + res.error.error.message + ')' : ''}`);
			return;
		}
		// The DELETE only asks: the server says whether the query ended canceled.
		checkQueryInfo(q, await prestoQueryInfo(client, q.id), true);
		q.finish('canceled');
		return;
	}
	if (!res.ok) {
		const e = res.error ?? {};
		const msg = e.errorName ? describeTrinoError(e) :
			`${e.message ?? String(e)}${e.error?.message ? ' (' + e.error.message + ')' : ''}` +
			`${e.code ? ' [HTTP ' + e.code + ']' : ''}`;
		q.finish('failed', `query ${q.id ?? '(no id)'}: ${msg}`);
		return;
	}
	if (res.stats?.state !== 'FINISHED')
		q.setMismatch(`the last page says state ${res.stats?.state}, expected FINISHED`);
	if (q.rows !== o.rows)
		q.setMismatch(`${q.rows} rows, expected ${o.rows}`);
	if (o.checkInfo) {
		checkQueryInfo(q, await prestoQueryInfo(client, q.id), false);
	}
	void lastStats;
	q.finish('ok');
}

// ---- the run ------------------------------------------------------------

function makeRunner(o) {
	if (o.client === 'trino') {
		// One client per user: trino-client sends the user per query, the source
		// from its options on every request.
		const trino = Trino.create({ server: o.url.origin, source: o.source });
		return q => trinoQuery(o, trino, q);
	}
	const clients = new Map();
	return q => {
		let c = clients.get(q.user);
		if (!c) {
			c = new prestoClient.Client({
				host: o.url.hostname, port: Number(o.url.port || 80), user: q.user,
				source: o.source, engine: o.engine, checkInterval: 1,
				timeout: o.timeoutMs / 1000,
			});
			clients.set(q.user, c);
		}
		return prestoQuery(o, c, q);
	};
}

function withTimeout(o, q, promise) {
	let timer;
	const timeout = new Promise(resolve => {
		timer = setTimeout(() => {
			q.finish('failed', `timed out after ${o.timeoutMs / 1000} s in state ${q.state}`);
			resolve();
		}, o.timeoutMs + 2000);
	});
	return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function percentile(sorted, p) {
	if (sorted.length === 0)
		return null;
	const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
	return Math.round(sorted[Math.max(0, i)] * 10) / 10;
}

async function main() {
	const o = parseOptions();
	const run = makeRunner(o);
	const queries = [];
	for (let i = 0; i < o.queries; i++) {
		const q = new QueryRun(o, i);
		q.source = o.source;
		queries.push(q);
	}
	const started = performance.now();
	let next = 0;
	const worker = async () => {
		while (next < queries.length) {
			const q = queries[next++];
			q.started = performance.now();
			try {
				await withTimeout(o, q, run(q));
			} catch (e) {
				q.finish('failed', `unexpected: ${e?.stack ?? e}`);
			}
			q.finish('failed', 'the client returned without an outcome');
		}
	};
	await Promise.all(Array.from({ length: Math.min(o.concurrency, o.queries) }, worker));
	const durationS = (performance.now() - started) / 1000;

	const count = outcome => queries.filter(q => q.outcome === outcome).length;
	const latencies = queries.map(q => q.latencyMs).filter(x => x !== null).sort((a, b) => a - b);
	const problems = queries.filter(q => q.outcome === 'failed' || q.outcome === 'mismatch');
	const summary = {
		client: o.client,
		engine: o.client === 'presto' ? o.engine : 'trino',
		server: o.url.origin,
		queries: o.queries,
		concurrency: o.concurrency,
		rows_per_query: o.rows,
		page_rows: o.pageRows,
		ok: count('ok'),
		canceled: count('canceled'),
		cancel_expected: queries.filter(q => q.cancel).length,
		failed: count('failed'),
		mismatches: count('mismatch'),
		rows: queries.reduce((n, q) => n + q.rows, 0),
		pages: queries.reduce((n, q) => n + q.pages, 0),
		retries: queries.reduce((n, q) => n + (q.retries ?? 0), 0),
		latency_ms: {
			p50: percentile(latencies, 50), p90: percentile(latencies, 90),
			p99: percentile(latencies, 99), max: percentile(latencies, 100),
		},
		duration_s: Math.round(durationS * 1000) / 1000,
		errors: problems.slice(0, 50).map(q => ({
			index: q.index, id: q.id, outcome: q.outcome, state: q.state,
			message: q.outcome === 'mismatch' ? q.mismatch : q.error,
		})),
	};
	// A canceled query that was not meant to be, or the reverse, is a mismatch.
	for (const q of queries) {
		if ((q.outcome === 'canceled') !== q.cancel && q.outcome !== 'failed' && q.outcome !== 'mismatch') {
			summary.mismatches++;
			summary.errors.push({ index: q.index, id: q.id, outcome: q.outcome,
				message: q.cancel ? 'was to be canceled but was not' : 'canceled unasked' });
		}
	}
	if (o.details) {
		summary.details = queries.map(q => ({
			index: q.index, id: q.id, user: q.user, outcome: q.outcome, state: q.state,
			rows: q.rows, pages: q.pages, latency_ms: Math.round(q.latencyMs * 10) / 10,
			rows_sha256: q.hash.digest('hex'), error: q.error ?? q.mismatch,
		}));
	}
	summary.pass = summary.mismatches === 0 && (o.allowFailures || summary.failed === 0) &&
		summary.ok + summary.canceled + summary.failed === o.queries;
	if (o.json) {
		process.stdout.write(JSON.stringify(summary) + '\n');
	} else {
		process.stdout.write(`${o.client} -> ${summary.server}: ${summary.ok} ok, ` +
			`${summary.canceled} canceled, ${summary.failed} failed, ${summary.mismatches} mismatches, ` +
			`${summary.rows} rows in ${summary.duration_s} s; latency p50 ${summary.latency_ms.p50} ms ` +
			`p99 ${summary.latency_ms.p99} ms\n`);
		for (const e of summary.errors)
			process.stdout.write(`  query ${e.index} ${e.id ?? ''} ${e.outcome}: ${e.message}\n`);
	}
	// Pending keep-alive sockets or a timed-out query must not hold the exit.
	process.exit(summary.pass ? 0 : 1);
}

main().catch(e => {
	process.stderr.write(`run_queries: ${e?.stack ?? e}\n`);
	process.exit(1);
});
