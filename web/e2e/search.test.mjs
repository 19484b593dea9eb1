// End-to-end test of the search page in headless Chromium:
//   node search.test.mjs URL SNEAKER_PNG OUT_DIR [STOPPED_DRAINER_PID]
// Prints one "web: ..." line per check that passed; exits non-zero at the first that fails.
// With a drainer's pid (stopped with SIGSTOP, new arrivals 300001..300003 and a broken upload
// 300004 queued behind it), the page must show them pending, and after SIGCONT ready and failed.
import { chromium } from 'playwright-core';
import { pixelBomb } from './images.mjs';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';

const [url, sneaker, out, drainer] = process.argv.slice(2);
// VS_E2E_MODELS=2: the page must offer a second model (the demo's efficientnet-lite0-imagenet).
const twoModels = process.env.VS_E2E_MODELS === '2';
if (!url || !sneaker || !out) throw new Error('usage: node search.test.mjs URL SNEAKER_PNG OUT_DIR');
mkdirSync(out, { recursive: true });

const check = (ok, what, detail) => {
  if (!ok) throw new Error(`${what}: ${detail}`);
  console.log(`web: ${what} (${detail})`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The machine has no network beyond localhost: no background connections, no sandbox as root.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const results = page.locator('#results .card');
  const categories = () => results.evaluateAll((cards) => cards.map((c) => c.dataset.category));
  const searched = async (action) => {
    await page.evaluate(() => { document.body.dataset.state = 'pending'; });
    await action();
    await page.waitForSelector('body[data-state=done]', { timeout: 60000 });
  };
  // Screenshots once every thumbnail has arrived.
  const screenshot = async (name) => {
    await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 30000 });
    await page.screenshot({ path: `${out}/${name}`, fullPage: true });
  };

  await page.goto(url);
  await page.waitForSelector('body[data-state=ready]', { timeout: 30000 });
  const options = await page.locator('#category option').count();
  const catalogue = await page.locator('#catalogue .card').count();
  check(options >= 3 && catalogue > 0, 'page loads the catalogue', `${options - 1} categories, ${catalogue} products to click`);

  const arrivals = () => page.locator('#arrivals .card').evaluateAll((cards) =>
    Object.fromEntries(cards.map((c) => [c.dataset.id, c.querySelector('.vector').textContent || 'ready'])));
  if (drainer) {
    const seen = await arrivals();
    const queue = await page.locator('#queue').textContent();
    await screenshot('web_arrivals_pending.png');
    check(['300001', '300002', '300003', '300004'].every((id) => seen[id] === 'vector pending') && queue.includes('4 waiting'),
      'new arrivals queued behind the drainer show as pending', `${JSON.stringify(seen)}; "${queue}"`);
    process.kill(Number(drainer), 'SIGCONT');
    // The page looks again every 2 s while the queue has work.
    await page.waitForFunction(() => document.body.dataset.queue === '0', null, { timeout: 60000 });
    await page.waitForFunction(() => !document.querySelector('#arrivals .card.pending'), null, { timeout: 30000 });
    const after = await arrivals();
    check(['300001', '300002', '300003'].every((id) => after[id] === 'ready') && after['300004'].startsWith('no vector: '),
      'once drained the page shows them ready, and the broken upload failed with its reason', JSON.stringify(after));
    await searched(() => page.locator('#arrivals .card[data-id="300001"]').click());
    const twins = await results.evaluateAll((cards) => cards.map((c) => c.dataset.id));
    check(twins.includes('300002') && twins.includes('300003'), 'a new arrival is searchable by itself', twins.join(', '));
  }

  await searched(() => page.setInputFiles('#file', sneaker));
  let found = await categories();
  const sneakers = found.filter((c) => c === 'Sneaker').length;
  await screenshot('web_search_sneaker.png');
  check(found.length === 10 && sneakers >= 8, 'a sneaker photo finds sneakers',
    `${sneakers} of the top ${found.length} are sneakers; screenshot ${out}/web_search_sneaker.png`);
  const distances = await page.locator('#results .distance').allTextContents();
  const values = distances.map((d) => parseFloat(d.replace('distance ', '')));
  check(values.every((v, i) => i === 0 || values[i - 1] <= v), 'results are in distance order', values.slice(0, 3).join(', '));

  await searched(() => page.selectOption('#n', '5'));
  check((await results.count()) === 5, 'N selects how many', '5 results');

  await searched(() => page.selectOption('#category', 'Sandal'));
  found = await categories();
  check(found.length === 5 && found.every((c) => c === 'Sandal'), 'the category filter applies', found.join(', '));
  await searched(() => page.selectOption('#category', ''));

  // Dropping a photo on the page searches as choosing it does.
  const photo = readFileSync(sneaker).toString('base64');
  await searched(async () => {
    const transfer = await page.evaluateHandle(async (b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
      return dt;
    }, photo);
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: transfer });
  });
  found = await categories();
  check(found.length === 5 && found.every((c) => c === 'Sneaker') && (await page.locator('#query figcaption').textContent()) === 'dropped.png',
    'a dropped photo is searched', found.join(', '));

  const first = page.locator('#catalogue .card:not(.pending):not(.failed)').first();
  const id = await first.getAttribute('data-id');
  await searched(() => first.click());
  const querySrc = await page.locator('#query img').getAttribute('src');
  const ids = await results.evaluateAll((cards) => cards.map((c) => c.dataset.id));
  check(querySrc === `/api/v1/products/${id}/image` && ids.length === 5 && !ids.includes(id), 'clicking a product searches by it',
    `product ${id} → ${ids.join(', ')}`);

  const error = page.locator('#error');
  await searched(() => page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a photo') }));
  let message = await error.textContent();
  check(await error.isVisible() && message.includes('22P03'), 'a non-image upload shows the database error', message);

  await searched(() => page.setInputFiles('#file', { name: 'huge.png', mimeType: 'image/png', buffer: pixelBomb(10000, 10000) }));
  message = await error.textContent();
  check(await error.isVisible() && message.includes('54000'), 'a 100-megapixel upload is refused by the database', message);

  await searched(() => page.setInputFiles('#file', { name: 'big.jpg', mimeType: 'image/jpeg', buffer: randomBytes(11 << 20) }));
  message = await error.textContent();
  await screenshot('web_search_error.png');
  check(await error.isVisible() && message.includes('larger than'), 'an 11 MB upload is refused by the page', message);

  await searched(() => page.setInputFiles('#file', sneaker));
  check((await results.count()) === 5 && !(await error.isVisible()), 'the page works after the errors', 'sneaker again');

  // With a second model (the demo's efficientnet-lite0-imagenet) the page answers with both,
  // side by side by default, or with the one chosen.
  check(!twoModels || await page.locator('#model-choice').isVisible(), 'the page offers a choice of model', twoModels ? 'two models' : 'one model');
  if (twoModels) {
    const columns = () => page.locator('#answers .answer').evaluateAll((cols) => cols.map((c) => ({
      model: c.dataset.model, categories: [...c.querySelectorAll('.card')].map((x) => x.dataset.category),
      status: c.querySelector('.status').textContent })));
    const colour = sneaker.replace(/sneaker\.png$/, 'sneaker_colour.jpg');
    await searched(() => page.selectOption('#n', '10'));
    await searched(() => page.setInputFiles('#file', colour));
    const both = await columns();
    await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 30000 });
    await page.locator('#answer').screenshot({ path: `${out}/web_side_by_side.png` });
    // ImageNet's features see a shoe in a colour photo of one (measured: 8 sneakers, 2 sandals).
    const footwear = both[1].categories.filter((c) => ['Sneaker', 'Sandal', 'Ankle boot'].includes(c)).length;
    check(both.length === 2 && both[1].model === 'efficientnet-lite0-imagenet' && both.every((c) => c.categories.length === 10) && footwear >= 8,
      'a colour photo is answered by both models side by side',
      both.map((c) => `${c.model}: ${c.categories.join(', ')}`).join(' | ') + `; screenshot ${out}/web_side_by_side.png`);
    await searched(() => page.selectOption('#model', 'efficientnet-lite0-imagenet'));
    const one = await columns();
    check(one.length === 1 && one[0].model === 'efficientnet-lite0-imagenet' && one[0].categories.length === 10,
      'a model can be chosen alone', one[0].status);
  }
} finally {
  await browser.close();
}
