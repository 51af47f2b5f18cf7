// Who someone is on screen: a name, or for a contact without one a short readable form
// of their address shown once; a stable colour per contact, and for an unnamed contact an
// identicon drawn from their key (never the "N" of "npub"). And their trust marks.

import { h, icon, shortKey, vh } from './dom.js';
import { peerOf, state } from './state.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const HUES = 8; // style.css: .avatar[data-hue="0".."7"], each with white text at AA contrast

/** A person's name: what you called them, else a short form of their npub. */
export function personName(pubkey) {
  const contact = state.contacts.get(pubkey);
  if (contact) return contact.name || (contact.npub ? shortKey(contact.npub) : 'Someone');
  for (const conv of state.conversations.values()) { // not a contact (yet): what the list says
    if ((conv.peer || conv.pubkey) === pubkey && conv.name) return conv.name;
  }
  const npub = npubOf(pubkey);
  return npub ? shortKey(npub) : 'Someone';
}

/** True when the person has a name of yours: the short npub is then not the name. */
export function hasName(pubkey) {
  const contact = state.contacts.get(pubkey);
  return Boolean(contact && contact.name);
}

export function npubOf(pubkey) {
  const contact = state.contacts.get(pubkey);
  if (contact && contact.npub) return contact.npub;
  for (const conv of state.conversations.values()) {
    if ((conv.peer || conv.pubkey) === pubkey && conv.npub) return conv.npub;
  }
  return '';
}

/** A conversation's name: a direct conversation is named after its peer. */
export function conversationName(id) {
  const conv = state.conversations.get(id);
  const peer = peerOf(id);
  if (peer) return personName(peer);
  return (conv && conv.name) || 'Conversation';
}

/** A stable colour per person, from their key. */
export function hueOf(pubkey) {
  return String(parseInt((pubkey || '00').slice(0, 2), 16) % HUES);
}

/**
 * The avatar: the first letter of the name you gave, on the person's colour; without a
 * name, a 5×5 mirrored identicon drawn from their key (two people look different).
 */
export function avatar(pubkey, { large = false } = {}) {
  const el = h('span', { class: large ? 'avatar large' : 'avatar', 'aria-hidden': 'true', dataset: { hue: hueOf(pubkey) } });
  if (hasName(pubkey)) {
    el.textContent = ([...personName(pubkey).trim()][0] || '?').toUpperCase();
  } else {
    el.appendChild(identicon(pubkey || ''));
  }
  return el;
}

function identicon(pubkey) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 5 5');
  svg.setAttribute('class', 'identicon');
  for (let row = 0; row < 5; row += 1) {
    for (let col = 0; col < 3; col += 1) {
      const nibble = parseInt(pubkey.charAt(2 + row * 3 + col) || '0', 16);
      if (nibble % 2 === 0) continue;
      for (const x of col === 2 ? [2] : [col, 4 - col]) {
        const cell = document.createElementNS(SVG_NS, 'rect');
        cell.setAttribute('x', String(x));
        cell.setAttribute('y', String(row));
        cell.setAttribute('width', '1');
        cell.setAttribute('height', '1');
        svg.appendChild(cell);
      }
    }
  }
  return svg;
}

/** The contact's safety number changed since it was verified (or this tab saw a new device). */
export function numberChanged(pubkey) {
  const contact = state.contacts.get(pubkey);
  return Boolean((contact && contact.verification_changed) || state.keyChanged.has(pubkey));
}

/** In the list: a shield for a verified contact, a warning when the number changed. */
export function trustMark(pubkey) {
  if (!pubkey) return null;
  const contact = state.contacts.get(pubkey);
  if (numberChanged(pubkey)) {
    return h('span', { class: 'trust changed', title: 'The safety number changed: verify it again' },
      icon('alert'), vh('Safety number changed'));
  }
  if (contact && contact.verified) {
    return h('span', { class: 'trust ok', title: 'You verified this safety number' }, icon('shield'), vh('Verified'));
  }
  return null;
}
