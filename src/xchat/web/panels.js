// Dialogs: your card, a new chat, contact details, safety numbers (settings: settings.js).

import { get, imageUrl, patch, post } from './api.js';
import { drawHeader, drawNotices, openConversation, trustChanged } from './conversation.js';
import { h, icon, replace, shortWhen } from './dom.js';
import { renderList } from './list.js';
import { npubOf, personName } from './people.js';
import { conversationWith, markKeyChanged, setConversations, state } from './state.js';
import { markReadSoon } from './timeline.js';
import { errorText, openDialog, toast } from './ui.js';

export function alertBox() {
  return h('p', { class: 'form-error', role: 'alert', hidden: true });
}

export function say(box, text) {
  box.textContent = text;
  box.hidden = !text;
}

export function field(label, input, hint) {
  const id = `p-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl);
}

async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied.`);
    return true;
  } catch {
    toast('That could not be copied: select the text and copy it yourself.', { error: true });
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
      if (contact.already_contact) toast(`${personName(contact.pubkey)} is already a contact: here is your conversation.`);
      openConversation(conversationWith(contact.pubkey));
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

let conversationsRead = 0;

/**
 * Reads the conversation list again. Reads overlap (a message and a contact event of a
 * new request each ask for one); only the newest answer counts, or an older one landing
 * last would take away a conversation the newer one has.
 */
export async function refreshConversations() {
  const serial = ++conversationsRead;
  const list = await get('/api/conversations');
  if (serial !== conversationsRead) return;
  setConversations(list);
  renderList();
}

// -- contacts ----------------------------------------------------------------------------------

export async function setContactState(pk, value) {
  try {
    const contact = await patch(`/api/contacts/${pk}`, { state: value });
    applyContact(contact);
    const name = personName(pk);
    toast(value === 'blocked' ? `${name} is blocked.` : `${name} is a contact now.`);
  } catch (error) {
    toast(`That did not work. ${errorText(error)}`, { error: true });
  }
}

/** A contact changed (from the API or the stream). */
export function applyContact(contact) {
  state.contacts.set(contact.pubkey, contact);
  const id = conversationWith(contact.pubkey);
  const conv = id ? state.conversations.get(id) : null;
  if (contact.state === 'blocked') {
    if (id) state.conversations.delete(id);
  } else if (conv) {
    conv.name = contact.name;
    conv.state = contact.state;
    conv.forward_secret = contact.forward_secret;
  } else {
    refreshConversations().catch(() => {});
  }
  renderList();
  if (id && state.current === id) {
    drawHeader();
    drawNotices();
    if (contact.state === 'accepted') markReadSoon();
  }
  contactHooks.changed();
}

/** Settings (settings.js) redraws its blocked list when a contact changes. */
export const contactHooks = { changed() {} };

export function renameContact(pk) {
  const { body, close } = openDialog(`Rename ${personName(pk)}`);
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
  const { body } = openDialog(personName(pk));
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
  const name = personName(pk);
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
