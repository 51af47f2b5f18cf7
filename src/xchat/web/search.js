// Search across conversations: names in the list (filtered here), message text by the
// node, on this machine (GET /api/search).

import { get } from './api.js';
import { clear, h, replace, shortWhen } from './dom.js';
import { conversationName } from './people.js';
import { screen } from './screen.js';
import { state } from './state.js';
import { errorText } from './ui.js';

let searchSerial = 0;

/** Filters the list by `text` (drawList redraws it) and shows the messages that match. */
export async function runSearch(text, drawList) {
  const els = screen.els;
  state.search = text;
  drawList();
  const serial = ++searchSerial;
  const q = text.trim();
  if (!q) {
    els.results.hidden = true;
    clear(els.results);
    return;
  }
  let hits = [];
  try {
    hits = await get(`/api/search?q=${encodeURIComponent(q)}`);
  } catch (error) {
    if (serial === searchSerial && screen.els) replace(screen.els.results, h('p', { class: 'list-empty' }, errorText(error)));
    return;
  }
  if (serial !== searchSerial || !screen.els) return;
  els.results.hidden = false;
  replace(els.results,
    h('h2', { class: 'results-title', id: 'results-title' }, 'Messages'),
    hits.length
      ? h('ul', { class: 'conv-list', 'aria-labelledby': 'results-title' }, hits.map((m) => h('li', null,
        h('button', { type: 'button', class: 'conv hit', onclick: () => screen.actions.open(m.conversation, { focus: m }) },
          h('span', { class: 'conv-main' },
            h('span', { class: 'conv-top' },
              h('span', { class: 'conv-name' }, m.outgoing ? `You to ${conversationName(m.conversation)}` : conversationName(m.conversation)),
              h('time', { class: 'conv-time' }, shortWhen(m.sent_at))),
            h('span', { class: 'conv-last' }, highlight(m.body, q)))))))
      : h('p', { class: 'list-empty' }, 'No messages found.'));
}

function highlight(body, q) {
  const lower = body.toLowerCase();
  const at = lower.indexOf(q.toLowerCase());
  if (at < 0) return body.slice(0, 140);
  const start = Math.max(0, at - 40);
  return [start ? '…' : '', body.slice(start, at), h('mark', null, body.slice(at, at + q.length)),
    body.slice(at + q.length, at + q.length + 100)];
}
