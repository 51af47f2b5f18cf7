// Dialogs: your card, a new chat, contact details, safety numbers, settings.

import { ApiError, del, get, imageUrl, patch, post } from './api.js';
import { h, icon, replace, shortWhen } from './dom.js';
import {
  drawHeader, drawNotices, errorText, markReadSoon, openConversation, renderList, trustChanged,
} from './chat.js';
import { displayName, markKeyChanged, npubOf, state } from './state.js';
import { openDialog, toast } from './ui.js';

function alertBox() {
  return h('p', { class: 'form-error', role: 'alert', hidden: true });
}

function say(box, text) {
  box.textContent = text;
  box.hidden = !text;
}

function field(label, input, hint) {
  const id = `p-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl);
}

async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied`);
    return true;
  } catch {
    toast('Could not copy: select the text and copy it yourself', { error: true });
    return false;
  }
}

function qrImage(path, alt) {
  const img = h('img', { class: 'qr', alt, width: 220, height: 220 });
  imageUrl(path).then((url) => {
    img.addEventListener('load', () => setTimeout(() => URL.revokeObjectURL(url), 1000), { once: true });
    img.src = url;
  }, () => img.replaceWith(h('p', { class: 'hint' }, 'The QR code could not be loaded.')));
  return img;
}

// -- your card ------------------------------------------------------------------------------

export async function openCard() {
  const { body } = openDialog('Your address');
  body.append(h('p', { class: 'hint' }, 'Loading…'));
  let identity;
  try {
    identity = await get('/api/identity');
    state.identity = identity;
  } catch (error) {
    replace(body, h('p', { class: 'form-error', role: 'alert' }, errorText(error)));
    return;
  }
  replace(body,
    h('p', null, 'Give this address to the people you want to chat with. It is public: it lets them write to you, nothing more.'),
    h('div', { class: 'card-grid' },
      qrImage('/api/identity/qr.svg', 'QR code of your address'),
      h('div', null,
        h('h3', null, 'Address'),
        h('p', { class: 'address', id: 'own-npub' }, identity.npub),
        h('div', { class: 'row' },
          h('button', { type: 'button', class: 'primary', onclick: () => copy(identity.npub, 'Address') }, 'Copy address'),
          h('button', { type: 'button', onclick: () => copy(identity.nprofile, 'Address with relay hints') }, 'Copy with relay hints')),
        h('h3', null, 'Relay hints'),
        identity.relays.length
          ? h('ul', { class: 'relay-hints' }, identity.relays.slice(0, 3).map((url) => h('li', null, h('code', null, url))))
          : h('p', { class: 'hint' }, 'No relays yet.'),
        h('p', { class: 'hint' }, 'The copy with relay hints (nprofile) also tells other apps where your mail is read.'))));
}

// -- a new chat --------------------------------------------------------------------------------

export function openNewChat() {
  const { body, leave } = openDialog('New chat');
  const address = h('input', {
    type: 'text', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none',
    placeholder: 'npub1… or nprofile1…', required: true,
  });
  const name = h('input', { type: 'text', autocomplete: 'off', maxlength: 64 });
  const error = alertBox();
  const button = h('button', { type: 'submit', class: 'primary' }, 'Start chat');
  const submit = async (e) => {
    e.preventDefault();
    const value = address.value.trim().replace(/^nostr:/i, '');
    if (!/^(npub1|nprofile1)[0-9a-z]+$/i.test(value)) {
      say(error, 'Paste an address that starts with npub1 or nprofile1.');
      address.setAttribute('aria-invalid', 'true');
      address.focus();
      return;
    }
    address.removeAttribute('aria-invalid');
    say(error, '');
    button.disabled = true;
    button.textContent = 'Looking them up…';
    try {
      const body = { address: value };
      if (name.value.trim()) body.name = name.value.trim();
      const contact = await post('/api/contacts', body);
      state.contacts.set(contact.pubkey, contact);
      await refreshConversations();
      leave();
      openConversation(contact.pubkey);
    } catch (err) {
      button.disabled = false;
      button.textContent = 'Start chat';
      say(error, errorText(err));
      address.focus();
    }
  };
  body.append(h('form', { onsubmit: submit, novalidate: true },
    field('Contact address', address, 'Their npub or nprofile: they find it under “My address” in X Chat, or in any Nostr app.'),
    field('Name (optional)', name),
    error,
    h('div', { class: 'row end' }, button)));
  address.focus();
}

export async function refreshConversations() {
  const list = await get('/api/conversations');
  state.conversations = new Map(list.map((c) => [c.pubkey, c]));
  renderList();
}

// -- contacts ----------------------------------------------------------------------------------

export async function setContactState(pk, value) {
  try {
    const contact = await patch(`/api/contacts/${pk}`, { state: value });
    applyContact(contact);
    toast(value === 'blocked' ? `${displayName(pk)} is blocked` : value === 'accepted' ? `${displayName(pk)} is a contact` : 'Done');
  } catch (error) {
    toast(`That did not work: ${errorText(error)}`, { error: true });
  }
}

/** A contact changed (from the API or the stream). */
export function applyContact(contact) {
  state.contacts.set(contact.pubkey, contact);
  const conv = state.conversations.get(contact.pubkey);
  if (contact.state === 'blocked') {
    state.conversations.delete(contact.pubkey);
  } else if (conv) {
    conv.name = contact.name;
    conv.state = contact.state;
    conv.forward_secret = contact.forward_secret;
  } else {
    refreshConversations().catch(() => {});
  }
  renderList();
  if (state.current === contact.pubkey) {
    drawHeader();
    drawNotices();
    if (contact.state === 'accepted') markReadSoon();
  }
  if (settingsRedraw) settingsRedraw();
}

export function renameContact(pk) {
  const { body, close } = openDialog(`Rename ${displayName(pk)}`);
  const contact = state.contacts.get(pk) || {};
  const input = h('input', { type: 'text', maxlength: 64, value: contact.name || '', autocomplete: 'off' });
  const error = alertBox();
  const submit = async (e) => {
    e.preventDefault();
    try {
      applyContact(await patch(`/api/contacts/${pk}`, { name: input.value.trim() }));
      close();
    } catch (err) {
      say(error, errorText(err));
    }
  };
  body.append(h('form', { onsubmit: submit, novalidate: true },
    field('Name', input, 'Only you see this name. Leave it empty to show their address.'),
    error,
    h('div', { class: 'row end' },
      h('button', { type: 'button', onclick: close }, 'Cancel'),
      h('button', { type: 'submit', class: 'primary' }, 'Save'))));
  input.select();
  input.focus();
}

export function openContactInfo(pk) {
  const contact = state.contacts.get(pk) || {};
  const { body } = openDialog(displayName(pk));
  body.append(
    h('h3', null, 'Address'),
    h('p', { class: 'address' }, npubOf(pk)),
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => copy(npubOf(pk), 'Address') }, 'Copy address')),
    h('h3', null, 'Where they read mail'),
    contact.relays && contact.relays.length
      ? h('ul', { class: 'relay-hints' }, contact.relays.map((url) => h('li', null, h('code', null, url))))
      : h('p', { class: 'hint' }, 'Not known yet: messages go to your relays.'),
    h('h3', null, 'Encryption'),
    h('p', null, contact.forward_secret === false
      ? 'Plain NIP-17 (not forward-secret): this contact uses another Nostr app. A key stolen later could decrypt these messages.'
      : 'X Chat sessions with forward secrecy.'),
    contact.created_at ? h('p', { class: 'hint' }, `Added ${shortWhen(contact.created_at * 1000)}`) : null);
}

// -- safety numbers -------------------------------------------------------------------------------

/** The contact's mark follows what the safety number says (the same facts as the Contact's). */
function noteSafety(pk, info) {
  const contact = state.contacts.get(pk);
  if (!contact) return;
  contact.verified = info.verified;
  contact.verification_changed = info.previously_verified;
  trustChanged(pk);
}

/** Reads every contact again: a device change moves the verified marks (docs/api.md). */
export async function refreshContacts() {
  const list = await get('/api/contacts');
  state.contacts = new Map(list.map((c) => [c.pubkey, c]));
  for (const contact of list) trustChanged(contact.pubkey);
}

export async function openVerify(pk) {
  const name = displayName(pk);
  const { body } = openDialog(`Verify ${name}`, { wide: true });
  body.append(h('p', { class: 'hint' }, 'Loading…'));
  const draw = (info) => {
    const groups = info.safety_number.split(/\s+/);
    const toggle = h('button', {
      type: 'button', class: info.verified ? '' : 'primary',
      onclick: async () => {
        try {
          const next = await post(`/api/contacts/${pk}/verify`, { verified: !info.verified });
          if (next.verified) {
            markKeyChanged(pk, false);
            state.dismissed.delete(pk);
          }
          noteSafety(pk, next);
          draw(next);
          toast(next.verified ? `${name} is verified` : 'Verification cleared');
        } catch (error) {
          toast(errorText(error), { error: true });
        }
      },
    }, info.verified ? 'Clear verification' : 'Mark as verified');
    replace(body,
      info.previously_verified
        ? h('div', { class: 'notice danger', role: 'alert' }, icon('alert'),
          h('p', null, h('strong', null, 'The safety number changed since you verified it. '),
            `${name} added a device or reinstalled, or someone is in between. Compare the new number.`))
        : null,
      h('p', null, `Compare these numbers with the ones ${name} sees, in person or on a call you trust, or scan each other's code. If they match, nobody is in between.`),
      h('div', { class: 'card-grid' },
        qrImage(`/api/contacts/${pk}/safety-number/qr.svg`, 'QR code of the safety number'),
        h('div', null,
          h('p', { class: 'safety-number', 'aria-label': `Safety number: ${groups.join(' ')}` },
            groups.map((g) => h('span', { 'aria-hidden': 'true' }, g))),
          h('p', { class: info.verified ? 'verified-line ok' : 'verified-line' },
            info.verified ? [icon('shield'), ' Verified'] : 'Not verified'),
          h('p', { class: 'hint' }, `${info.devices.length} device${info.devices.length === 1 ? '' : 's'} known for ${name}.`),
          info.forward_secret ? null : h('p', { class: 'hint' }, 'This contact uses plain NIP-17: the number covers their key only.'),
          h('div', { class: 'row' }, toggle))));
  };
  try {
    const info = await get(`/api/contacts/${pk}/safety-number`);
    noteSafety(pk, info);
    draw(info);
  } catch (error) {
    replace(body, h('p', { class: 'form-error', role: 'alert' }, errorText(error)));
  }
}

// -- settings --------------------------------------------------------------------------------------

let settingsRedraw = null;

/** Called when relays change (stream events) while settings are open. */
export function relaysChanged() {
  if (settingsRedraw) settingsRedraw();
}

const RELAY_STATES = { connected: 'Connected', connecting: 'Connecting…', disconnected: 'Disconnected' };

export function openSettings(actions) {
  const { body } = openDialog('Settings', { wide: true, onClose: () => { settingsRedraw = null; } });
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
      toast('Relay removed');
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
      toast('Relay added');
    } catch (err) {
      say(relayError, errorText(err));
    }
  };
  const receipts = h('input', { type: 'checkbox', role: 'switch', checked: state.settings.read_receipts });
  receipts.addEventListener('change', async () => {
    try {
      state.settings = await patch('/api/settings', { read_receipts: receipts.checked });
      toast(receipts.checked ? 'Read receipts on' : 'Read receipts off');
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
        h('span', null, displayName(c.pubkey)),
        h('button', { type: 'button', class: 'small', 'aria-label': `Unblock ${displayName(c.pubkey)}`, onclick: () => actions.unblock(c.pubkey) }, 'Unblock'))))
      : h('p', { class: 'hint' }, 'Nobody is blocked.'));
  };
  const drawDevice = (status) => {
    const facts = [
      ['Your address', state.identity ? state.identity.npub : state.session?.npub],
      ['This device', status ? status.device : state.identity?.device],
      ['Node', status ? `API ${status.api_version}, up ${Math.round(status.uptime)} s` : ''],
      ['Waiting to send', status ? String(status.outbox_pending) : ''],
    ];
    replace(deviceInfo, facts.filter(([, v]) => v).map(([k, v]) => [h('dt', null, k), h('dd', null, h('span', { class: 'address' }, v))]));
  };
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
      h('h3', { id: 'set-device' }, 'This device'),
      deviceInfo),
    h('section', { 'aria-labelledby': 'set-phrase' },
      h('h3', { id: 'set-phrase' }, 'Recovery phrase'),
      phraseBox),
    h('section', { 'aria-labelledby': 'set-lock' },
      h('h3', { id: 'set-lock' }, 'Lock'),
      h('p', { class: 'hint' }, 'Locking closes your messages and forgets the keys until you type the passphrase again.'),
      h('button', { type: 'button', class: 'primary', onclick: actions.lock }, icon('lock'), ' Lock now')));
  settingsRedraw = () => {
    drawRelays();
    drawBlocked();
  };
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

