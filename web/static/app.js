// The page's behaviour: every search is one request a model, each answered by one SQL query.
const $ = (id) => document.getElementById(id);
let query = null; // {photo: File} or {product: {id, name}}
let models = []; // [{name, column}], the default model first
const SIDE_BY_SIDE = '*';

function card(p) {
  const li = document.createElement('li');
  li.className = 'card';
  li.dataset.id = p.id;
  li.dataset.category = p.category;
  li.title = 'find products like this one';
  const img = document.createElement('img');
  img.src = p.image_url || `/api/v1/products/${p.id}/image`;
  img.alt = p.name;
  li.append(img);
  for (const [cls, text] of [['name', p.name], ['category', p.category],
                             ['distance', p.distance == null ? '' : `distance ${p.distance.toFixed(3)}`],
                             ['vector', { pending: 'vector pending', failed: `no vector: ${p.problem}` }[p.vector] || '']]) {
    const div = document.createElement('div');
    div.className = cls;
    div.textContent = text;
    li.append(div);
  }
  // A product still in the embedding queue (or whose photo failed) cannot be searched by yet.
  if (p.vector === 'pending' || p.vector === 'failed') {
    li.classList.add(p.vector);
    li.title = p.vector === 'pending' ? 'its vector is still being computed' : p.problem;
  } else {
    li.addEventListener('click', () => search({ product: p }));
  }
  return li;
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) {
    const code = body.sqlstate ? ` (SQLSTATE ${body.sqlstate})` : '';
    throw new Error(`${body.error}${code}`);
  }
  return body;
}

function filterParams(model) {
  const params = new URLSearchParams({ n: $('n').value });
  if ($('category').value) params.set('category', $('category').value);
  if (model) params.set('model', model);
  return params;
}

// The models a search asks: the one chosen, or all of them side by side. The first column's
// list and status keep the ids #results and #status.
function chosenModels() {
  const choice = $('model').value;
  return !choice ? [null] : choice === SIDE_BY_SIDE ? models.map((m) => m.name) : [choice];
}

function answerColumn(model, i) {
  const div = document.createElement('div');
  div.className = 'answer';
  div.dataset.model = model || '';
  const h3 = document.createElement('h3');
  h3.textContent = models.length > 1 && model ? model : '';
  const status = document.createElement('p');
  status.className = 'status';
  const ol = document.createElement('ol');
  ol.className = 'grid results';
  if (i === 0) { status.id = 'status'; ol.id = 'results'; }
  div.append(h3, status, ol);
  return div;
}

async function ask(q, model, column) {
  const started = performance.now();
  // The page searches through the same API as any integration (/api/v1, see openapi.json).
  const { results: found } = q.photo
    ? await call(`/api/v1/search?${filterParams(model)}`, { method: 'POST', body: q.photo,
                                                            headers: { 'Content-Type': 'application/octet-stream' } })
    : await call(`/api/v1/products/${q.product.id}/similar?${filterParams(model)}`);
  column.querySelector('ol').replaceChildren(...found.map(card));
  const ms = Math.round(performance.now() - started);
  column.querySelector('.status').textContent = `${found.length} most similar products (${ms} ms)`;
}

async function search(q) {
  query = q;
  showError('');
  const img = $('query').querySelector('img');
  if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
  if (q.photo) {
    img.dataset.url = img.src = URL.createObjectURL(q.photo);
    $('query').querySelector('figcaption').textContent = q.photo.name;
  } else {
    delete img.dataset.url;
    img.src = `/api/v1/products/${q.product.id}/image`;
    $('query').querySelector('figcaption').textContent = q.product.name;
  }
  const asked = chosenModels();
  const columns = asked.map(answerColumn);
  for (const c of columns) c.querySelector('.status').textContent = 'searching…';
  $('answers').replaceChildren(...columns);
  $('answer').hidden = false;
  document.body.dataset.state = 'searching';
  const outcomes = await Promise.allSettled(asked.map((m, i) => ask(q, m, columns[i])));
  const failed = outcomes.filter((o) => o.status === 'rejected');
  if (failed.length === outcomes.length) {
    // The photo itself was refused (every model says so): one message for the page.
    $('answer').hidden = true;
    showError(`The search failed: ${failed[0].reason.message}`);
  } else {
    // A model may lack a product's vector while the others have it: that column says so.
    outcomes.forEach((o, i) => {
      if (o.status === 'rejected') {
        const status = columns[i].querySelector('.status');
        status.textContent = `no answer: ${o.reason.message}`;
        status.classList.add('failed');
      }
    });
  }
  document.body.dataset.state = 'done';
}

async function loadCatalogue() {
  const params = new URLSearchParams({ n: 24 });
  if ($('category').value) params.set('category', $('category').value);
  try {
    $('catalogue').replaceChildren(...(await call(`/api/products?${params}`)).map(card));
  } catch (e) {
    showError(`The catalogue could not be read: ${e.message}`);
  }
}

// The newest products, with the state of their vectors; looked at again every 2 s while the
// background queue has work or an arrival is pending, so that an arrival turns searchable on the
// page by itself (the queue is read first: a row it no longer counts has its vector by then).
async function loadArrivals() {
  let busy = false;
  try {
    const queue = await call('/api/queue');
    const arrivals = await call('/api/products?newest=true&n=8');
    $('arrivals').replaceChildren(...arrivals.map(card));
    $('queue').textContent = [queue.pending ? `${queue.pending} waiting for their vector` : '',
                              queue.failed ? `${queue.failed} failed` : ''].filter(Boolean).join(', ');
    document.body.dataset.queue = queue.pending;
    busy = queue.pending > 0 || arrivals.some((p) => p.vector === 'pending');
  } catch (e) {
    showError(`The new arrivals could not be read: ${e.message}`);
  }
  setTimeout(loadArrivals, busy ? 2000 : 10000);
}

async function start() {
  try {
    models = await call('/api/models');
    if (models.length > 1) {
      $('model').append(new Option('side by side', SIDE_BY_SIDE), ...models.map((m) => new Option(m.name, m.name)));
      $('model-choice').hidden = false;
    }
  } catch (e) {
    showError(`The models could not be read: ${e.message}`);
  }
  try {
    for (const c of await call('/api/categories')) {
      $('category').append(new Option(`${c.name} (${c.products})`, c.name));
    }
  } catch (e) {
    showError(`The catalogue could not be read: ${e.message}`);
  }
  $('file').addEventListener('change', () => { if ($('file').files[0]) search({ photo: $('file').files[0] }); });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) search({ photo: e.dataTransfer.files[0] });
  });
  for (const id of ['model', 'category', 'n']) $(id).addEventListener('change', () => { if (query) search(query); });
  $('category').addEventListener('change', loadCatalogue);
  $('shuffle').addEventListener('click', loadCatalogue);
  await Promise.all([loadCatalogue(), loadArrivals()]);
  document.body.dataset.state = 'ready';
}

start();
