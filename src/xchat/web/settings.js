// Settings: relays, privacy, appearance, this device in plain words, the recovery
// phrase, the passphrase, and locking.

import { ApiError, del, get, patch, post } from './api.js';
import { h, icon, replace } from './dom.js';
import { alertBox, contactHooks, field, say } from './panels.js';
import { personName } from './people.js';
import { state } from './state.js';
import { errorText, openDialog, toast } from './ui.js';

const MIN_PASSPHRASE = 8;

let settingsRedraw = null;

/** Called when relays change (stream events) while settings are open. */
export function relaysChanged() {
  if (settingsRedraw) settingsRedraw();
}

const RELAY_STATES = { connected: 'Connected', connecting: 'Connecting…', disconnected: 'Disconnected' };

export function openSettings(actions) {
  const { body } = openDialog('Settings', { wide: true, onClose: () => { settingsRedraw = null; contactHooks.changed = () => {}; } });
  const relayList = h('ul', { class: 'relay-list', 'aria-label': 'Relays' });
  const blockedList = h('div');
  const deviceInfo = h('dl', { class: 'facts' });
  const drawRelays = () => {
    const inbox = state.inbox || [];
    const urls = new Set(state.inbox || [...state.relays.values()].filter((r) => r.reading).map((r) => r.url));
    if (!urls.size) {
      replace(relayList, h('li', { class: 'hint' }, 'No relays.'));
      return;
    }
    replace(relayList, [...urls].sort().map((url) => {
      const health = state.relays.get(url) || { state: 'connecting' };
      const stateLabel = RELAY_STATES[health.state] || health.state;
      const details = [];
      if (health.state === 'connected' && health.latency_ms != null) details.push(`${Math.round(health.latency_ms)} ms`);
      if (health.state !== 'connected' && health.last_error) details.push(health.last_error);
      if (health.warning) details.push(`Warning: ${health.warning}`);
      if (health.state === 'disconnected' && health.next_retry_at) {
        details.push(`retrying in ${Math.max(0, Math.round(health.next_retry_at - Date.now() / 1000))} s`);
      }
      const embedded = url === state.embedded;
      return h('li', { class: 'relay' },
        h('span', { class: `dot dot-${health.state}`, 'aria-hidden': 'true' }),
        h('span', { class: 'relay-main' },
          h('code', null, url),
          h('span', { class: 'relay-state' }, stateLabel, details.length ? ` · ${details.join(' · ')}` : '',
            embedded ? ' · on this computer' : '')),
        inbox.includes(url) && !embedded
          ? h('button', { type: 'button', class: 'small', 'aria-label': `Remove relay ${url}`, onclick: () => removeRelay(url) }, 'Remove')
          : null);
    }));
  };
  const removeRelay = async (url) => {
    try {
      state.inbox = (await del(`/api/relays?url=${encodeURIComponent(url)}`)).inbox;
      drawRelays();
      toast('The relay is removed.');
    } catch (error) {
      toast(errorText(error), { error: true });
    }
  };
  const relayInput = h('input', { type: 'url', placeholder: 'wss://relay.example', autocomplete: 'off', spellcheck: 'false' });
  const relayError = alertBox();
  const addRelay = async (e) => {
    e.preventDefault();
    const url = relayInput.value.trim();
    if (!/^wss?:\/\/\S+$/i.test(url)) {
      say(relayError, 'A relay address starts with wss:// (or ws:// for one on this computer).');
      relayInput.focus();
      return;
    }
    say(relayError, '');
    try {
      state.inbox = (await post('/api/relays', { url })).inbox;
      relayInput.value = '';
      drawRelays();
      toast('The relay is added.');
    } catch (err) {
      say(relayError, errorText(err));
    }
  };
  const receipts = h('input', { type: 'checkbox', role: 'switch', checked: state.settings.read_receipts });
  receipts.addEventListener('change', async () => {
    try {
      state.settings = await patch('/api/settings', { read_receipts: receipts.checked });
      toast(receipts.checked ? 'Read receipts are on.' : 'Read receipts are off.');
    } catch (error) {
      receipts.checked = !receipts.checked;
      toast(errorText(error), { error: true });
    }
  });
  const themeName = `theme-${Math.random().toString(36).slice(2)}`;
  const current = localStorage.getItem('xchat.theme') || 'system';
  const themes = [['system', 'Follow the system'], ['light', 'Light'], ['dark', 'Dark']].map(([value, label]) => {
    const input = h('input', { type: 'radio', name: themeName, value, checked: current === value });
    input.addEventListener('change', () => actions.theme(value));
    return h('label', { class: 'choice' }, input, label);
  });
  const drawBlocked = () => {
    const blocked = [...state.contacts.values()].filter((c) => c.state === 'blocked');
    replace(blockedList, blocked.length
      ? h('ul', { class: 'plain-list' }, blocked.map((c) => h('li', null,
        h('span', null, personName(c.pubkey)),
        h('button', { type: 'button', class: 'small', 'aria-label': `Unblock ${personName(c.pubkey)}`, onclick: () => actions.unblock(c.pubkey) }, 'Unblock'))))
      : h('p', { class: 'hint' }, 'Nobody is blocked.'));
  };
  const drawDevice = (status) => replace(deviceInfo, deviceFacts(status));
  const phraseBox = h('div');
  const drawPhraseAsk = () => {
    const input = h('input', { type: 'password', autocomplete: 'current-password' });
    const error = alertBox();
    const submit = async (e) => {
      e.preventDefault();
      try {
        const { phrase } = await post('/api/phrase', { passphrase: input.value });
        input.value = '';
        replace(phraseBox,
          h('ol', { class: 'phrase', 'aria-label': 'Recovery phrase' }, phrase.split(' ').map((w) => h('li', null, h('span', { class: 'word' }, w)))),
          h('button', { type: 'button', onclick: drawPhraseHidden }, 'Hide recovery phrase'));
        phraseBox.querySelector('ol').tabIndex = -1;
        phraseBox.querySelector('ol').focus();
      } catch (err) {
        say(error, err instanceof ApiError && err.code === 'wrong_passphrase' ? 'Wrong passphrase.' : errorText(err));
        input.select();
      }
    };
    replace(phraseBox, h('form', { onsubmit: submit, novalidate: true },
      field('Passphrase', input, 'Type your passphrase again to see the phrase.'),
      error,
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: drawPhraseHidden }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary' }, 'Show'))));
    input.focus();
  };
  const drawPhraseHidden = () => {
    replace(phraseBox,
      h('p', null, 'Anyone who has your recovery phrase can read your messages. Show it only where nobody can see your screen.'),
      h('button', { type: 'button', onclick: drawPhraseAsk }, 'Show recovery phrase'));
  };
  drawPhraseHidden();
  body.append(
    h('section', { 'aria-labelledby': 'set-relays' },
      h('h3', { id: 'set-relays' }, 'Relays'),
      h('p', { class: 'hint' }, 'Your mail is read from these relays. They see only sealed envelopes.'),
      relayList,
      h('form', { class: 'inline-form', onsubmit: addRelay, novalidate: true },
        field('Relay address', relayInput),
        h('button', { type: 'submit' }, 'Add relay')),
      relayError),
    h('section', { 'aria-labelledby': 'set-privacy' },
      h('h3', { id: 'set-privacy' }, 'Privacy'),
      h('label', { class: 'choice' }, receipts, 'Send read receipts'),
      h('p', { class: 'hint' }, 'When off, contacts do not see when you read their messages.'),
      h('h4', null, 'Blocked contacts'),
      blockedList),
    h('section', { 'aria-labelledby': 'set-theme' },
      h('h3', { id: 'set-theme' }, 'Appearance'),
      h('fieldset', { class: 'choices' }, h('legend', { class: 'vh' }, 'Theme'), themes)),
    h('section', { 'aria-labelledby': 'set-device' },
      h('h3', { id: 'set-device' }, 'X Chat on this computer'),
      deviceInfo),
    h('section', { 'aria-labelledby': 'set-phrase' },
      h('h3', { id: 'set-phrase' }, 'Recovery phrase'),
      phraseBox),
    h('section', null, // no accessible name: "Passphrase" labels the recovery phrase's field
      h('h3', null, 'Passphrase'),
      passphraseForm()),
    h('section', { 'aria-labelledby': 'set-lock' },
      h('h3', { id: 'set-lock' }, 'Lock'),
      h('p', { class: 'hint' }, 'Locking closes your messages and forgets the keys until you type the passphrase again.'),
      h('button', { type: 'button', class: 'primary', onclick: actions.lock }, icon('lock'), ' Lock now')));
  settingsRedraw = () => {
    drawRelays();
    drawBlocked();
    drawDevice(state.status);
  };
  contactHooks.changed = () => settingsRedraw && settingsRedraw();
  drawRelays();
  drawBlocked();
  drawDevice(state.status);
  get('/api/relays').then((relays) => {
    state.inbox = relays.inbox;
    state.embedded = relays.embedded;
    for (const health of relays.health) state.relays.set(health.url, health);
    if (settingsRedraw) drawRelays();
  }, () => {});
  get('/api/status').then((status) => {
    state.status = status;
    drawDevice(status);
  }, () => {});
  get('/api/contacts').then((contacts) => {
    for (const c of contacts) state.contacts.set(c.pubkey, c);
    if (settingsRedraw) drawBlocked();
  }, () => {});
}


function plural(n, one, many = `${one}s`) {
  return `${n.toLocaleString('en')} ${n === 1 ? one : many}`;
}

/** How long, in words: "4 minutes", "2 hours", "3 days". */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return 'less than a minute';
  if (s < 3600) return plural(Math.floor(s / 60), 'minute');
  if (s < 86400) return plural(Math.floor(s / 3600), 'hour');
  return plural(Math.floor(s / 86400), 'day');
}

/** What a person needs to know about their node, in words (not "API 1, up 132 s"). */
function deviceFacts(status) {
  const facts = [['Your address', state.identity ? state.identity.npub : state.session?.npub]];
  if (status) {
    const reading = status.relays.filter((r) => r.reading);
    const up = reading.filter((r) => r.state === 'connected').length;
    facts.push(['Running', `Your X Chat node has been running for ${duration(status.uptime)}.`]);
    let relays = 'No relay brings your mail: add one above.';
    if (reading.length === 1) {
      relays = up ? 'Connected to the relay that brings your mail.'
        : 'Not connected to the relay that brings your mail: messages wait until it is back.';
    } else if (reading.length) {
      relays = `Connected to ${up} of the ${reading.length} relays that bring your mail.${up ? '' : ' Messages wait until one is back.'}`;
    }
    facts.push(['Relays', relays]);
    facts.push(['Waiting to go out', status.outbox_pending
      ? `${plural(status.outbox_pending, 'message')} waiting for a relay to take ${status.outbox_pending === 1 ? 'it' : 'them'}.`
      : 'Nothing: every message you sent has left this computer.']);
    facts.push(['This device', status.device]);
  }
  return facts.filter(([, v]) => v).map(([k, v]) => [h('dt', null, k), h('dd', null, k === 'Your address' || k === 'This device' ? h('span', { class: 'address' }, v) : v)]);
}

/** Change the passphrase, behind a button: the current one, the new one twice (POST /api/passphrase). */
function passphraseForm() {
  const box = h('div');
  const closed = () => replace(box,
    h('p', { class: 'hint' }, 'The passphrase unlocks X Chat on this computer. Changing it changes nothing else: your address, contacts and messages stay.'),
    h('button', { type: 'button', onclick: () => { replace(box, changeForm(closed)); box.querySelector('input').focus(); } }, 'Change passphrase'));
  closed();
  return box;
}

function changeForm(closed) {
  const input = (autocomplete) => h('input', { type: 'password', autocomplete, spellcheck: 'false', minlength: MIN_PASSPHRASE });
  const old = input('current-password');
  const first = input('new-password');
  const second = input('new-password');
  const error = alertBox();
  const done = h('p', { class: 'hint', role: 'status' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Save new passphrase');
  const submit = async (e) => {
    e.preventDefault();
    done.textContent = '';
    let problem = '';
    if (!old.value) problem = 'Type your current passphrase.';
    else if (first.value.length < MIN_PASSPHRASE) problem = `The new passphrase must have at least ${MIN_PASSPHRASE} characters.`;
    else if (first.value !== second.value) problem = 'The two new passphrases are not the same.';
    say(error, problem);
    if (problem) return;
    button.disabled = true;
    try {
      await post('/api/passphrase', { old: old.value, new: first.value });
      for (const el of [old, first, second]) el.value = '';
      done.textContent = 'Your passphrase is changed. Use the new one the next time you unlock X Chat.';
      toast('Your passphrase is changed.');
    } catch (err) {
      say(error, err instanceof ApiError && err.code === 'wrong_passphrase'
        ? 'That is not your current passphrase.' : errorText(err));
      old.select();
    } finally {
      button.disabled = false;
    }
  };
  return h('form', { onsubmit: submit, novalidate: true },
    field('Current passphrase', old),
    field('New passphrase', first, `At least ${MIN_PASSPHRASE} characters.`),
    field('Repeat new passphrase', second),
    error, done,
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: closed }, 'Close'), button));
}
