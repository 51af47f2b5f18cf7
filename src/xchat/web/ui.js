// Menus, dialogs and toasts: real buttons, focus kept where the user expects it.

import { ApiError, OfflineError } from './api.js';
import { clear, h, icon } from './dom.js';

let openMenuState = null;

export function closeMenu(restoreFocus = false) {
  if (!openMenuState) return;
  const { menu, anchor, onDown } = openMenuState;
  openMenuState = null;
  document.removeEventListener('pointerdown', onDown, true);
  menu.remove();
  if (restoreFocus && anchor && anchor.isConnected) anchor.focus();
}

/**
 * A menu of real buttons next to `anchor`. items: {label, action, danger?, ariaLabel?}
 * or {row: [items]} for a horizontal row (emoji). Arrow keys move, Escape closes.
 */
export function openMenu(anchor, label, items) {
  closeMenu();
  const menu = h('div', { class: 'menu', role: 'menu', 'aria-label': label });
  const buttons = [];
  const make = (item) => {
    const button = h('button', {
      type: 'button', role: 'menuitem', tabindex: '-1', class: item.danger ? 'danger' : '',
      'aria-label': item.ariaLabel,
      onclick: () => {
        closeMenu(!item.keepFocus);
        item.action();
      },
    }, item.label);
    buttons.push(button);
    return button;
  };
  for (const item of items) {
    if (item.row) menu.appendChild(h('div', { class: 'menu-row', role: 'group', 'aria-label': item.label }, item.row.map(make)));
    else menu.appendChild(make(item));
  }
  menu.addEventListener('keydown', (e) => {
    const i = buttons.indexOf(document.activeElement);
    if (e.key === 'ArrowDown' || e.key === 'ArrowRight') {
      e.preventDefault();
      buttons[(i + 1) % buttons.length].focus();
    } else if (e.key === 'ArrowUp' || e.key === 'ArrowLeft') {
      e.preventDefault();
      buttons[(i - 1 + buttons.length) % buttons.length].focus();
    } else if (e.key === 'Home') {
      e.preventDefault();
      buttons[0].focus();
    } else if (e.key === 'End') {
      e.preventDefault();
      buttons[buttons.length - 1].focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      closeMenu(true);
    } else if (e.key === 'Tab') {
      closeMenu(true);
    }
  });
  const onDown = (e) => {
    if (!menu.contains(e.target) && e.target !== anchor && !anchor.contains(e.target)) closeMenu();
  };
  document.addEventListener('pointerdown', onDown, true);
  openMenuState = { menu, anchor, onDown };
  const host = anchor.closest('dialog') || document.body;
  host.appendChild(menu);
  const box = anchor.getBoundingClientRect();
  const width = menu.offsetWidth;
  const height = menu.offsetHeight;
  let left = Math.min(box.right - width, window.innerWidth - width - 8);
  left = Math.max(8, left);
  let top = box.bottom + 4;
  if (top + height > window.innerHeight - 8) top = Math.max(8, box.top - height - 4);
  menu.style.left = `${left}px`;
  menu.style.top = `${top}px`;
  anchor.setAttribute('aria-expanded', 'true');
  const observer = new MutationObserver(() => {
    if (!menu.isConnected) {
      anchor.setAttribute('aria-expanded', 'false');
      observer.disconnect();
    }
  });
  observer.observe(host, { childList: true });
  buttons[0]?.focus();
}

/**
 * A modal <dialog> (focus trapped, Escape closes, focus returns to the opener).
 * Returns {dialog, body, close, leave}; leave() closes without restoring the focus.
 */
export function openDialog(title, { wide = false, onClose } = {}) {
  const id = `d-${Math.random().toString(36).slice(2)}`;
  const body = h('div', { class: 'dialog-body' });
  const dialog = h('dialog', { class: wide ? 'dialog wide' : 'dialog', 'aria-labelledby': id });
  let restore = true;
  const close = () => dialog.close();
  const leave = () => { // close, and let the caller put the focus elsewhere
    restore = false;
    dialog.close();
  };
  dialog.append(
    h('header', { class: 'dialog-head' },
      h('h2', { id }, title),
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', onclick: close }, icon('close'))),
    body);
  const opener = document.activeElement;
  dialog.addEventListener('close', () => {
    closeMenu();
    dialog.remove();
    if (onClose) onClose();
    if (restore && opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
  });
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) close(); // a click on the backdrop
  });
  document.body.appendChild(dialog);
  dialog.showModal();
  return { dialog, body, close, leave };
}

/** A yes/no question; resolves true for yes. */
export function confirmDialog(title, text, yes, { danger = true } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const { body, close } = openDialog(title, { onClose: () => resolve(answer) });
    const ok = h('button', { type: 'button', class: danger ? 'danger primary' : 'primary', onclick: () => { answer = true; close(); } }, yes);
    body.append(
      h('p', null, text),
      h('div', { class: 'row end' },
        h('button', { type: 'button', onclick: close }, 'Cancel'),
        ok));
    ok.focus();
  });
}

let toastTimer = 0;
/** A short message at the bottom (role=status: read out politely). */
export function toast(text, { error = false } = {}) {
  const host = document.getElementById('toasts');
  if (!host) return;
  clear(host);
  host.appendChild(h('div', { class: error ? 'toast error' : 'toast' }, sentence(text)));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => clear(host), error ? 8000 : 3000);
}

/** An error as a sentence for a toast or a form: capitalised, ending with a full stop. */
export function errorText(error) {
  if (error instanceof OfflineError) return 'X Chat is offline: your node cannot be reached.';
  if (error instanceof ApiError) return sentence(error.message || 'That did not work');
  return 'Something went wrong.';
}

/** Text as a sentence: a capital first letter, a full stop (or ? !) at the end. */
export function sentence(text) {
  const t = String(text || '').trim();
  if (!t) return '';
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}
