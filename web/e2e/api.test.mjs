// The JSON API (/api/v1) of a running visual_search_web, over HTTP as an integration calls it:
//   node api.test.mjs open URL SNEAKER_PNG     every endpoint and error path of a server without a token
//   node api.test.mjs token URL TOKEN          a server started with --token-file and --max-concurrent 1
//   node api.test.mjs down URL                 a server whose database has been stopped
//   node api.test.mjs bot BOT_URL SNEAKER_PNG  the README's chat-bot webhook (web/examples/) in front of one
// Prints one "api: ..." line per check that passed; exits non-zero at the first that fails.
// Every JSON answer is also checked against the schema openapi.json gives for it.
import { Validator } from '@seriousme/openapi-schema-validator';
import Ajv2020 from 'ajv/dist/2020.js';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { pixelBomb } from './images.mjs';

const [mode, base, arg] = process.argv.slice(2);
if (!['open', 'token', 'down', 'bot'].includes(mode) || !base) throw new Error('usage: node api.test.mjs open|token|down|bot URL [SNEAKER_PNG|TOKEN]');
const url = (path) => new URL(path, base).toString();

const check = (ok, what, detail) => {
  if (!ok) throw new Error(`${what}: ${detail}`);
  console.log(`api: ${what} (${detail})`);
};

if (mode === 'bot') {
  const reply = async (bytes) => (await (await fetch(base, { method: 'POST', body: bytes })).json()).reply;
  const text = await reply(readFileSync(arg));
  const sneakers = (text.match(/\(Sneaker\)/g) || []).length;
  check(text.startsWith('You might like') && sneakers >= 4 && text.includes('/api/v1/products/'), 'the chat bot answers a sneaker photo with sneakers', JSON.stringify(text.slice(0, 120)));
  const sorry = await reply(Buffer.from('not a photo'));
  check(sorry.startsWith('Sorry') && sorry.includes('not recognised'), 'and tells a customer when a photo cannot be used', JSON.stringify(sorry));
  process.exit(0);
}

// The document as the server serves it, and a validator of answers against its schemas.
const doc = await (await fetch(url('/api/v1/openapi.json'), { headers: mode === 'token' ? { Authorization: `Bearer ${arg}` } : {} })).json();
const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema({ $id: 'api', components: doc.components });
const schema = (name) => ajv.getSchema(`api#/components/schemas/${name}`);

// One request: its status, content type and JSON body; a JSON body is checked against `shape`.
async function call(path, { shape, ...options } = {}) {
  const r = await fetch(url(path), options);
  const type = r.headers.get('content-type') || '';
  const body = type.startsWith('application/json') ? await r.json() : Buffer.from(await r.arrayBuffer());
  if (shape && type.startsWith('application/json')) {
    const valid = schema(shape);
    if (!valid(body)) throw new Error(`${path}: the answer is not a ${shape} of openapi.json: ${ajv.errorsText(valid.errors)}: ${JSON.stringify(body)}`);
  }
  return { status: r.status, type, body, headers: r.headers };
}

// An error: this status, JSON, the document's Error shape, and this SQLSTATE where one is given.
async function refused(what, path, status, options = {}, sqlstate) {
  const r = await call(path, { shape: 'Error', ...options });
  const ok = r.status === status && r.type.startsWith('application/json') && r.body.status === status
    && (sqlstate === undefined || r.body.sqlstate === sqlstate);
  check(ok, what, `${r.status} ${JSON.stringify(r.body).slice(0, 160)}`);
  return r;
}

const photo = (bytes, type = 'image/png') => ({ method: 'POST', body: bytes, headers: { 'Content-Type': type } });

// One request written by hand (what fetch will not send), and the status line and headers it got.
function rawRequest(path, rest) {
  return new Promise((resolve, reject) => {
    const u = new URL(url(path));
    const socket = net.connect(Number(u.port), u.hostname, () => socket.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\n${rest}`));
    let answer = '';
    socket.on('data', (d) => { answer += d; if (answer.includes('\r\n\r\n')) { socket.destroy(); resolve(answer); } });
    socket.on('error', reject);
    setTimeout(() => reject(new Error(`no answer to ${path}`)), 40000);
  });
}

// Sends the headers of a POST and as much of a body as the server reads, never more than `total`:
// the server must answer 413 while most of the body is still unsent.
function oversized(path, total, declare) {
  return new Promise((resolve, reject) => {
    const u = new URL(url(path));
    const socket = net.connect(Number(u.port), u.hostname);
    let sent = 0;
    let answer = '';
    const length = declare ? `Content-Length: ${total}\r\n` : 'Transfer-Encoding: chunked\r\n';
    socket.on('connect', () => {
      socket.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: image/jpeg\r\n${length}\r\n`);
      const chunk = randomBytes(256 << 10);
      // Paced as a network would be, so the answer is read before the next piece is written:
      // a server that closes with unread bytes resets the connection, and a reset loses what it
      // had sent but not yet been read.
      const more = () => {
        if (sent >= total || answer || socket.destroyed) return;
        const piece = declare ? chunk : Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
        sent += chunk.length;
        socket.write(piece, () => setTimeout(more, 5));
      };
      // A declared length must be refused before any of the body is sent.
      if (declare) setTimeout(more, 1000); else more();
    });
    socket.on('data', (d) => { answer += d; if (answer.includes('\r\n\r\n')) { socket.destroy(); resolve({ answer, sent }); } });
    socket.on('error', (e) => (answer ? resolve({ answer, sent }) : reject(e)));
    setTimeout(() => reject(new Error(`no answer after ${sent} bytes`)), 30000);
  });
}

if (mode === 'open') {
  const sneaker = readFileSync(arg);
  const { valid, errors } = await new Validator().validate(doc);
  check(valid, 'openapi.json is a valid OpenAPI document', valid ? `OpenAPI ${doc.openapi}, ${Object.keys(doc.paths).length} paths` : JSON.stringify(errors));

  const health = await call('/api/v1/health', { shape: 'Health' });
  check(health.status === 200 && health.body.status === 'ok' && health.body.database.ok && health.body.database.extension_version
    && health.body.models[0].dims > 0, 'health reports the database and the embedding service',
  JSON.stringify({ database: health.body.database, service: health.body.embedding_service?.running, models: health.body.models }));
  const { name: model, dims } = health.body.models[0];

  const raw = await call('/api/v1/search', { shape: 'Answer', ...photo(sneaker) });
  const cats = raw.body.results.map((p) => p.category);
  const sorted = raw.body.results.every((p, i, a) => i === 0 || a[i - 1].distance <= p.distance);
  check(raw.status === 200 && raw.body.model === model && raw.body.dims === dims && raw.body.count === 10 && sorted
    && cats.filter((c) => c === 'Sneaker').length >= 8, 'a sneaker photo (raw image/png body) finds sneakers, nearest first',
  `${raw.body.model} ${raw.body.dims}-d: ${cats.join(', ')}`);

  const form = new FormData();
  form.append('note', 'a field that is not the photo');
  form.append('image', new Blob([sneaker], { type: 'image/png' }), 'sneaker.png');
  const multi = await call('/api/v1/search', { shape: 'Answer', method: 'POST', body: form });
  const ids = (r) => r.body.results.map((p) => p.id).join(',');
  check(multi.status === 200 && ids(multi) === ids(raw), 'the same photo as multipart/form-data gives the same answer', ids(multi));

  const thumb = await call(raw.body.results[0].image_url);
  check(thumb.status === 200 && thumb.type === 'image/png' && thumb.body.subarray(1, 4).toString() === 'PNG', 'a result\'s image_url is its photo',
    `${raw.body.results[0].image_url}: ${thumb.type}, ${thumb.body.length} bytes`);

  const three = await call('/api/v1/search?n=3&category=Sandal', { shape: 'Answer', ...photo(sneaker) });
  check(three.body.count === 3 && three.body.results.every((p) => p.category === 'Sandal'), 'n and category narrow the answer',
    three.body.results.map((p) => `${p.id} ${p.category}`).join(', '));
  const first = raw.body.results[0].id;
  const similar = await call(`/api/v1/products/${first}/similar?n=5`, { shape: 'Answer' });
  check(similar.status === 200 && similar.body.count === 5 && similar.body.query.product === first
    && !similar.body.results.some((p) => p.id === first) && similar.body.results.filter((p) => p.category === 'Sneaker').length >= 4,
  'a stored product\'s similar products (never itself)', similar.body.results.map((p) => p.category).join(', '));

  const before = (await call('/api/categories')).body;
  for (const hostile of ["' OR 1=1 --", "Sneaker'; DROP TABLE products; --", '%', 'Sneaker" OR "1"="1', '\\', "$1; SELECT pg_sleep(10)"]) {
    const r = await call(`/api/v1/search?category=${encodeURIComponent(hostile)}`, { shape: 'Answer', ...photo(sneaker) });
    check(r.status === 200 && r.body.count === 0, 'a hostile category is only a value', `${JSON.stringify(hostile)} → ${r.body.count} results`);
  }
  await refused('a category with a NUL character: 422', `/api/v1/search?category=${encodeURIComponent('a\u0000b')}`, 422, photo(sneaker));
  const after = (await call('/api/categories')).body;
  check(JSON.stringify(after) === JSON.stringify(before), 'the catalogue is untouched by them', after.map((c) => `${c.name} ${c.products}`).join(', '));

  await refused('a file that is no image: 400 with 22P03', '/api/v1/search', 400, photo(Buffer.from('not a photo at all')), '22P03');
  await refused('a 100-megapixel PNG: 413 with 54000', '/api/v1/search', 413, photo(pixelBomb(10000, 10000)), '54000');
  const declared = await oversized('/api/v1/search', 200 << 20, true);
  check(declared.answer.startsWith('HTTP/1.1 413') && declared.sent === 0, 'a declared 200 MB upload is refused before its body is sent',
    `${declared.answer.split('\r\n')[0]} after ${declared.sent} bytes`);
  const chunked = await oversized('/api/v1/search', 200 << 20, false);
  check(chunked.answer.startsWith('HTTP/1.1 413') && chunked.sent < 40 << 20, 'a chunked upload is refused once past the limit, not read whole',
    `${chunked.answer.split('\r\n')[0]} after ${(chunked.sent / (1 << 20)).toFixed(1)} MB of 200 MB sent`);
  const broken = await rawRequest('/api/v1/search', 'Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n');
  check(broken.startsWith('HTTP/1.1 400'), 'broken chunked encoding: 400, not 413', broken.split('\r\n')[0]);
  // demo_test.sh adds product 400001 (the sneaker photo, no name, no category) and 400002 (no photo).
  const nameless = raw.body.results.concat((await call('/api/v1/search?n=20', { shape: 'Answer', ...photo(sneaker) })).body.results).find((p) => p.id === 400001);
  check(nameless && nameless.name === null && nameless.category === null, 'a product without name or category is answered with nulls', JSON.stringify(nameless));
  await refused('the image of a product without a photo: 404', '/api/v1/products/400002/image', 404);
  await refused('an empty body: 400', '/api/v1/search', 400, photo(Buffer.alloc(0)));
  await refused('a body typed text/plain: 415', '/api/v1/search', 415, photo(sneaker, 'text/plain'));
  const noImage = new FormData();
  noImage.append('note', 'no photo here');
  await refused('a form without a photo: 422', '/api/v1/search', 422, { method: 'POST', body: noImage });
  for (const n of ['0', '101', 'ten', '-1']) await refused(`n=${n}: 422`, `/api/v1/search?n=${n}`, 422, photo(sneaker));
  await refused('an unknown model: 422', '/api/v1/search?model=no-such-model', 422, photo(sneaker));
  await refused('similar to an unknown product: 404', '/api/v1/products/999999999/similar', 404);
  await refused('similar to a product id that is no number: 422', '/api/v1/products/abc/similar', 422);
  await refused('the image of an unknown product: 404', '/api/v1/products/999999999/image', 404);
  await refused('an unknown route: 404', '/api/v1/nothing-here', 404);
  await refused('a route asked with the wrong method: 405', '/api/v1/search', 405);
}

if (mode === 'token') {
  const token = arg;
  const auth = { Authorization: `Bearer ${token}` };
  const none = await refused('no token: 401', '/api/v1/health', 401);
  check(none.headers.get('www-authenticate') === 'Bearer', '401 names the scheme', none.headers.get('www-authenticate'));
  await refused('a wrong token of the same length: 401', '/api/v1/health', 401, { headers: { Authorization: `Bearer ${'x'.repeat(token.length)}` } });
  await refused('the token with a character short: 401', '/api/v1/health', 401, { headers: { Authorization: `Bearer ${token.slice(0, -1)}` } });
  await refused('the page itself wants the token too', '/', 401);
  const ok = await call('/api/v1/health', { shape: 'Health', headers: auth });
  check(ok.status === 200 && ok.body.status === 'ok', 'the right token is let in', ok.body.status);
  const lower = await call('/api/v1/health', { headers: { Authorization: `bearer ${token}` } });
  check(lower.status === 200, 'the scheme\'s name in any case', `bearer: ${lower.status}`);
  // A client that never finishes its headers is let go after 10 s (timed beside the busy check).
  const idle = net.connect(Number(new URL(base).port), '127.0.0.1', () => idle.write('GET / HTTP/1.1\r\nHost: x\r\n'));
  const idleClosed = new Promise((resolve) => idle.on('close', () => resolve(Date.now())));
  idle.on('error', () => {});
  const idleSince = Date.now();
  // One slot: a client that holds it (its upload not finished) makes the next one wait, then 503.
  const u = new URL(url('/api/v1/search'));
  const holder = net.connect(Number(u.port), u.hostname, () => holder.write(
    `POST /api/v1/search HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\nPNG`));
  await new Promise((r) => setTimeout(r, 500));
  const started = Date.now();
  const busy = await refused('beyond --max-concurrent a request waits, then 503', '/api/v1/search', 503, { ...photo(Buffer.from('x')), headers: { ...auth, 'Content-Type': 'image/png' } });
  check(busy.headers.get('retry-after') === '1', 'a busy 503 says when to retry', `Retry-After ${busy.headers.get('retry-after')}, after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  holder.destroy();
  const closedAfter = (await Promise.race([idleClosed, new Promise((r) => setTimeout(() => r(null), 15000))]));
  check(closedAfter !== null && closedAfter - idleSince >= 9000, 'a connection that does not finish its headers is closed after 10 s',
    closedAfter === null ? 'still open after 15 s' : `closed after ${((closedAfter - idleSince) / 1000).toFixed(1)} s`);
}

if (mode === 'down') {
  const h = await call('/api/v1/health', { shape: 'Health' });
  check(h.status === 503 && h.body.status === 'down' && h.body.database.ok === false, 'health says the database is down: 503', JSON.stringify(h.body.database));
  await refused('a search while the database is down: 503', '/api/v1/search', 503, photo(Buffer.from('x')));
  await refused('similar while the database is down: 503', '/api/v1/products/1/similar', 503);
}
