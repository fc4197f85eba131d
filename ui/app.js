// The dashboard's entry: a hash router over four pages (their shared helpers are in lib.js).
import { api, showError } from './lib.js';
import { runsPage } from './runs.js';
import { dataPage } from './data.js';
import { chatPage } from './chat.js';
import { newRunPage } from './new-run.js';

const keyMatch = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
if (keyMatch) {
  sessionStorage.setItem('sftkit-key', decodeURIComponent(keyMatch[1]));
  history.replaceState(null, '', location.pathname + '#/runs');
}

const pages = { runs: runsPage, data: dataPage, chat: chatPage, new: newRunPage };
let leave = null;

async function route() {
  const name = (/^#\/([a-z]+)/.exec(location.hash)?.[1]) ?? 'runs';
  const page = pages[name] ?? runsPage;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === name);
  if (leave) leave();
  leave = null;
  const main = document.getElementById('page');
  main.replaceChildren();
  main.dataset.page = name;
  try {
    leave = (await page(main)) ?? null;
  } catch (err) {
    showError(err);
  }
}

window.addEventListener('hashchange', route);
api('/api/info').then((info) => (document.getElementById('root').textContent = `root: ${info.root}`)).catch(showError);
route();
