// The dashboard in a real browser (Debian's chromium driven by playwright-core): every page loads with no
// console error; a run started from the New-run form appears under Runs and its curve gains points; the Data
// page's trained-token count of a row equals the records file's; Chat streams a reply from two checkpoints side
// by side; a screenshot of each page is written (SFTKIT_UI_SCREENSHOTS, else a temp folder).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { startUiServer } from '../../src/ui/server.ts';
import { makeUiRoot, trainedCountsFromFile } from './fixture.ts';

// What the page functions below touch of the browser's DOM (the tests compile without the DOM library).
declare const document: { querySelector(selector: string): { getAttribute(name: string): string | null; textContent: string | null } | null };

const CHROMIUM = process.env['SFTKIT_CHROMIUM'] ?? '/usr/bin/chromium';
const required = process.env['SFTKIT_REQUIRE_BROWSER'] === '1';
const skip = !existsSync(CHROMIUM) && !required ? `no chromium at ${CHROMIUM} (apt-get install -y chromium; SFTKIT_REQUIRE_BROWSER=1 makes this a failure)` : false;

test('the dashboard in chromium: runs, data, chat and a run started from the form', { skip, timeout: 240_000 }, async () => {
  const root = await makeUiRoot();
  const shots = process.env['SFTKIT_UI_SCREENSHOTS'] ?? join(tmpdir(), 'sftkit-ui-screenshots');
  mkdirSync(shots, { recursive: true });
  const ui = await startUiServer({ root, port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const errors: string[] = [];
  try {
    const page: Page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.method()} ${r.url()} (${r.failure()?.errorText ?? ''})`));

    // Runs: the finished run's curves, another run drawn over it, its checkpoints, eval results and report.
    await page.goto(`${ui.url}/#/runs?run=runs/done`);
    await page.locator('[data-testid="checkpoints"]').waitFor();
    await page.locator('input[data-compare="runs/done"]').waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid="run-detail"]')?.getAttribute('data-points') === '6');
    assert.equal(await page.locator('[data-testid="stat-step"]').textContent(), '6 / 6');
    assert.match((await page.locator('[data-testid="report"]').textContent()) ?? '', /<script>alert\(1\)<\/script>/, 'the report is shown as text, not run');
    assert.ok((await page.locator('[data-testid="loss-chart"] canvas').count()) > 0);

    // Data: row 2 drawn token by token; its trained count is the records file's.
    const counts = trainedCountsFromFile(join(root, 'records'));
    await page.goto(`${ui.url}/#/data?dir=records&row=2`);
    await page.locator('[data-testid="row-trained"]').waitFor();
    assert.equal(Number(await page.locator('[data-testid="row-trained"]').textContent()), counts[2]);
    assert.equal(await page.locator('[data-testid="row-tokens"] .tok.trained').count(), counts[2]);
    assert.equal(await page.locator('[data-testid="row-tokens"] [data-kind="bos"]').count(), 1);
    const listed = await page.locator('[data-testid="list-trained"]').allTextContents();
    assert.deepEqual(listed.map(Number), counts);
    await page.locator('[data-testid="preprocess-report"]').waitFor();
    assert.match((await page.locator('[data-testid="preprocess-report"]').textContent()) ?? '', /nothing to train after truncation: 16/);
    await page.screenshot({ path: join(shots, 'data.png'), fullPage: true });
    // Search by a word of this row's text finds the row.
    const text = (await page.locator('[data-testid="row-view"] details pre').textContent()) ?? '';
    const word = text.split(/\s+/).find((w) => /^[A-Za-z]{5,}$/.test(w) && !/assistant|curious|artificial|helpful|detailed|polite|answers|questions/i.test(w));
    assert.ok(word, text);
    await page.locator('[data-testid="search"]').fill(word);
    await page.locator('[data-testid="search"]').press('Enter');
    await page.locator('[data-testid="search-results"] tr[data-row="2"]').waitFor();

    // The same conversations tokenized here from their file: the first row is the records' first row.
    await page.locator('[data-testid="conv-file"]').fill('conversations.json');
    await page.locator('[data-testid="conv-tokenizer"]').selectOption('models/base');
    await page.locator('[data-testid="conv-seq"]').fill('128');
    await page.locator('[data-testid="conv-open"]').click();
    await page.waitForURL(/dir=%40tokenized/);
    await page.locator('[data-testid="row-trained"]').waitFor();
    assert.equal(Number(await page.locator('[data-testid="row-trained"]').textContent()), counts[0]);

    // New run: the form from the schema; its YAML follows the values; Start opens the run under Runs.
    await page.goto(`${ui.url}/#/new`);
    await page.locator('[data-key="optimizer.learning_rate"]').waitFor();
    assert.equal(await page.locator('[data-key="optimizer.learning_rate"]').inputValue(), '0.00001');
    await page.locator('[data-testid="run-name"]').fill('from-form');
    await page.locator('[data-key="runner_config.max_steps"]').fill('-5');
    await page.waitForFunction(() => /max_steps/.test(document.querySelector('[data-testid="form-error"]')?.textContent ?? ''));
    assert.equal(await page.locator('.field.invalid [data-key="runner_config.max_steps"]').count(), 1);
    await page.locator('[data-key="runner_config.max_steps"]').fill('40');
    await page.locator('[data-key="load_checkpoint"]').fill('models/base');
    await page.locator('[data-key="train_dataset.dataset_dir"]').fill('records');
    await page.locator('[data-key="optimizer.learning_rate"]').fill('0.001');
    await page.locator('[data-key="callbacks.checkpoint.save_checkpoint_steps"]').fill('20');
    await page.waitForFunction(() => /max_steps: 40/.test(document.querySelector('[data-testid="yaml"]')?.textContent ?? '') && /learning_rate: 0.001/.test(document.querySelector('[data-testid="yaml"]')?.textContent ?? ''));
    assert.match((await page.locator('[data-testid="command"]').textContent()) ?? '', /sftkit run --config from-form\/sftkit-ui-config\.yaml/);
    await page.locator('[data-testid="run-name"]').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, 'new-run.png') });
    await page.locator('[data-testid="start-run"]').click();
    await page.waitForURL(/#\/runs\?run=from-form/);
    await page.locator('tr[data-run="from-form"]').waitFor();
    // Points arrive while it trains: first some, then more.
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="run-detail"]')?.getAttribute('data-points') ?? 0) >= 1, undefined, { timeout: 90_000 });
    const firstPoints = Number(await page.locator('[data-testid="run-detail"]').getAttribute('data-points'));
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid="run-detail"]')?.getAttribute('data-points') ?? 0) > n, firstPoints, { timeout: 90_000 });
    await page.locator('input[data-compare="runs/done"]').check();
    // The ETA comes from the pace the page watched: it appears once steps have arrived twice (or says "done" when
    // the run ended before that, as it can on a busy machine).
    await page.waitForFunction(() => /\d|^done$/.test(document.querySelector('[data-testid="stat-eta"]')?.textContent ?? ''), undefined, { timeout: 90_000 });
    assert.match((await page.locator('[data-testid="stat-step"]').textContent()) ?? '', /^\d+ \/ 40$/);
    await page.screenshot({ path: join(shots, 'runs.png') });

    // Chat: base and "fine-tuned" side by side, the prompt shown, replies streamed.
    await page.goto(`${ui.url}/#/chat?model=models/base&compare=models/tuned`);
    await page.locator('[data-testid="chat-input"]').fill('Name a color.');
    await page.locator('[data-testid="show-prompt"]').check();
    await page.locator('[data-testid="send"]').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="reply-b"]')?.getAttribute('data-done') === '1', undefined, { timeout: 30_000 });
    for (const k of ['a', 'b']) {
      const reply = page.locator(`[data-testid="reply-${k}"]`);
      assert.ok(Number(await reply.getAttribute('data-chunks')) > 1, `reply ${k} streamed in chunks`);
      assert.ok(Number(await reply.getAttribute('data-reads')) > 1, `reply ${k} arrived over several network reads, as it was generated`);
      assert.notEqual(((await reply.textContent()) ?? '').trim(), '');
    }
    assert.match((await page.locator('[data-testid="prompt-a"]').textContent()) ?? '', /USER: Name a color\. ASSISTANT:/);
    assert.equal(await page.locator('[data-testid="reply-a"]').textContent(), await page.locator('[data-testid="reply-b"]').textContent(), 'same weights, same greedy reply');
    await page.screenshot({ path: join(shots, 'chat.png') });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await ui.close();
    rmSync(root, { recursive: true, force: true });
  }
});
