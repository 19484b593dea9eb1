// The page's behaviour: every search is one request, answered by one SQL query.
const $ = (id) => document.getElementById(id);
let query = null; // {photo: File} or {product: {id, name}}

function card(p) {
  const li = document.createElement('li');
  li.className = 'card';
  li.dataset.id = p.id;
  li.dataset.category = p.category;
  li.title = 'find products like this one';
  const img = document.createElement('img');
  img.src = `/image/${p.id}`;
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

function filterParams() {
  const params = new URLSearchParams({ n: $('n').value });
  if ($('category').value) params.set('category', $('category').value);
  return params;
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
    img.src = `/image/${q.product.id}`;
    $('query').querySelector('figcaption').textContent = q.product.name;
  }
  $('status').textContent = 'searching…';
  $('results').replaceChildren();
  $('answer').hidden = false;
  document.body.dataset.state = 'searching';
  const started = performance.now();
  try {
    const found = q.photo
      ? await call(`/api/search?${filterParams()}`, { method: 'POST', body: q.photo,
                                                      headers: { 'Content-Type': 'application/octet-stream' } })
      : await call(`/api/similar/${q.product.id}?${filterParams()}`);
    $('results').replaceChildren(...found.map(card));
    const ms = Math.round(performance.now() - started);
    $('status').textContent = `${found.length} most similar products (${ms} ms)`;
  } catch (e) {
    $('answer').hidden = true;
    showError(`The search failed: ${e.message}`);
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
  for (const id of ['category', 'n']) $(id).addEventListener('change', () => { if (query) search(query); });
  $('category').addEventListener('change', loadCatalogue);
  $('shuffle').addEventListener('click', loadCatalogue);
  await Promise.all([loadCatalogue(), loadArrivals()]);
  document.body.dataset.state = 'ready';
}

start();
