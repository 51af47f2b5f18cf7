// First run (create an account or restore one from its phrase) and unlocking.

import { ApiError, OfflineError, get, post } from './api.js';
import { h, icon, replace } from './dom.js';

const MIN_PASSPHRASE = 8;

function errorText(error) {
  if (error instanceof OfflineError) return 'X Chat is not reachable. Is `xchat up` still running?';
  if (error instanceof ApiError) {
    const text = error.message || 'That did not work.';
    return text.charAt(0).toUpperCase() + text.slice(1);
  }
  return 'Something went wrong. Try again.';
}

function alertBox() {
  return h('p', { class: 'form-error', role: 'alert', hidden: true });
}

function showError(box, text) {
  box.textContent = text;
  box.hidden = !text;
}

function busy(button, on, label) {
  button.disabled = on;
  button.setAttribute('aria-busy', on ? 'true' : 'false');
  if (on && label) {
    button.dataset.label = button.textContent;
    button.textContent = label;
  } else if (!on && button.dataset.label) {
    button.textContent = button.dataset.label;
    delete button.dataset.label;
  }
}

function screen(titleId, ...children) {
  return h('main', { class: 'onboard', 'aria-labelledby': titleId },
    h('div', { class: 'onboard-card' },
      h('div', { class: 'logo', 'aria-hidden': 'true' }, h('img', { src: 'icon.svg', alt: '' })),
      ...children));
}

function field(label, input, hint) {
  const id = `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl);
}

function passInput(autocomplete) {
  return h('input', {
    type: 'password', autocomplete, required: true, minlength: MIN_PASSPHRASE,
    spellcheck: 'false',
  });
}

/** The passphrase part of create and restore: two inputs and their check. */
function passphraseFields() {
  const first = passInput('new-password');
  const second = passInput('new-password');
  const fields = [
    field('Passphrase', first,
      `At least ${MIN_PASSPHRASE} characters. It unlocks X Chat on this computer and is never sent anywhere.`),
    field('Repeat passphrase', second),
  ];
  const check = () => {
    if (first.value.length < MIN_PASSPHRASE) {
      return `The passphrase must have at least ${MIN_PASSPHRASE} characters.`;
    }
    if (first.value !== second.value) return 'The two passphrases are not the same.';
    return '';
  };
  return { fields, check, value: () => first.value, first };
}

/**
 * The relays a new account starts with: the documented default set of public relays
 * (GET /api/relays/defaults; docs/relay.md), which the person may take as they are, edit,
 * or decline. Declined, X Chat uses only the relay on this computer, and says so.
 */
function relayChoice() {
  const name = `relays-${Math.random().toString(36).slice(2)}`;
  const use = h('input', { type: 'radio', name, value: 'public' });
  const local = h('input', { type: 'radio', name, value: 'local', checked: true });
  const list = h('textarea', {
    rows: 4, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false',
    'aria-label': 'Public relays, one per line',
  });
  const about = h('p', { class: 'hint' }, 'Loading the suggested relays…');
  const declined = h('p', { class: 'hint relay-declined' },
    'Only the relay on this computer: people on other computers cannot reach you, and you cannot reach them, until you add a public relay in Settings.');
  const sync = () => {
    list.disabled = !use.checked;
    declined.hidden = use.checked;
  };
  use.addEventListener('change', sync);
  local.addEventListener('change', sync);
  get('/api/relays/defaults').then((offer) => {
    list.value = offer.relays.join('\n');
    about.textContent = offer.relays.length
      ? `${offer.about} You can edit the list, or keep to this computer.`
      : 'No public relays are suggested on this computer. Type the ones you want, or keep to this computer.';
    if (offer.relays.length) use.checked = true;
    sync();
  }, () => {
    about.textContent = 'The suggested relays could not be loaded. Type the ones you want, or keep to this computer.';
    sync();
  });
  sync();
  const el = h('fieldset', { class: 'relay-choice' },
    h('legend', null, 'Relays: how people on other computers reach you'),
    about,
    h('label', { class: 'choice' }, use, 'Use these public relays'),
    list,
    h('label', { class: 'choice' }, local, 'Only the relay on this computer'),
    declined);
  const urls = () => list.value.split(/[\s,]+/).map((u) => u.trim()).filter(Boolean);
  return {
    el,
    /** '' or why the list cannot be used. */
    check() {
      if (!use.checked) return '';
      const bad = urls().find((u) => !/^wss?:\/\/[^\s/]+/i.test(u));
      if (bad) return `"${bad}" is not a relay address: one starts with wss:// (or ws:// for one on this computer).`;
      if (!urls().length) return 'Type at least one relay, or choose "Only the relay on this computer".';
      return '';
    },
    value: () => (use.checked ? urls() : []),
  };
}

/** Setup: the welcome screen and its two paths. done() once the node is unlocked. */
export function renderSetup(root, done) {
  const welcome = () => {
    const title = h('h1', { id: 'onboard-title' }, 'Welcome to X Chat');
    replace(root, screen('onboard-title',
      title,
      h('p', null, 'End-to-end encrypted messages over relays that cannot read them. ',
        'Your account is a key made from a recovery phrase: no phone number, no e-mail.'),
      h('div', { class: 'stack' },
        h('button', { class: 'primary', type: 'button', onclick: create }, 'Create a new account'),
        h('button', { type: 'button', onclick: restore }, 'Restore from a recovery phrase'))));
    title.tabIndex = -1;
    title.focus();
  };

  let phrase = '';

  const create = async () => {
    try {
      phrase = (await post('/api/setup/phrase', { words: 12 })).phrase;
    } catch (error) {
      welcome();
      root.querySelector('.onboard-card').appendChild(
        h('p', { class: 'form-error', role: 'alert' }, errorText(error)));
      return;
    }
    showPhrase();
  };

  const showPhrase = () => {
    const title = h('h1', { id: 'onboard-title', tabindex: '-1' }, 'Your recovery phrase');
    const words = phrase.split(' ');
    replace(root, screen('onboard-title',
      title,
      h('p', null, 'Write these words down, in order, and keep them somewhere safe and offline. ',
        'They are your account: with them you can restore it on a new computer; ',
        'anyone who has them can read your messages.'),
      h('ol', { class: 'phrase', 'aria-label': 'Recovery phrase' },
        words.map((word) => h('li', null, h('span', { class: 'word' }, word)))),
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: welcome }, 'Back'),
        h('button', { class: 'primary', type: 'button', onclick: confirmWords },
          'I have written it down'))));
    title.focus();
  };

  const confirmWords = () => {
    const words = phrase.split(' ');
    const positions = new Set();
    const random = new Uint32Array(16);
    crypto.getRandomValues(random);
    for (const r of random) {
      positions.add(r % words.length);
      if (positions.size === 3) break;
    }
    const asked = [...positions].sort((a, b) => a - b);
    const inputs = asked.map(() => h('input', {
      type: 'text', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false',
      required: true,
    }));
    const error = alertBox();
    const title = h('h1', { id: 'onboard-title', tabindex: '-1' }, 'Confirm your phrase');
    const submit = (e) => {
      e.preventDefault();
      for (const [i, pos] of asked.entries()) {
        if (inputs[i].value.trim().toLowerCase() !== words[pos]) {
          showError(error, `Word ${pos + 1} does not match. Check your written copy.`);
          inputs[i].setAttribute('aria-invalid', 'true');
          inputs[i].focus();
          return;
        }
        inputs[i].removeAttribute('aria-invalid');
      }
      choosePassphrase();
    };
    replace(root, screen('onboard-title',
      title,
      h('p', null, 'To be sure your copy is right, type these words from it.'),
      h('form', { onsubmit: submit, novalidate: true },
        asked.map((pos, i) => field(`Word ${pos + 1}`, inputs[i])),
        error,
        h('div', { class: 'row' },
          h('button', { type: 'button', onclick: showPhrase }, 'Show the phrase again'),
          h('button', { class: 'primary', type: 'submit' }, 'Continue')))));
    inputs[0].focus();
  };

  const choosePassphrase = () => {
    const pass = passphraseFields();
    const relays = relayChoice();
    const error = alertBox();
    const button = h('button', { class: 'primary', type: 'submit' }, 'Create account');
    const title = h('h1', { id: 'onboard-title', tabindex: '-1' }, 'Choose a passphrase');
    const submit = async (e) => {
      e.preventDefault();
      const problem = pass.check() || relays.check();
      showError(error, problem);
      if (problem) return;
      busy(button, true, 'Creating your account…');
      try {
        const session = await post('/api/setup', { phrase, passphrase: pass.value(), relays: relays.value() });
        phrase = '';
        done(session);
      } catch (err) {
        busy(button, false);
        showError(error, errorText(err));
      }
    };
    replace(root, screen('onboard-title',
      title,
      h('form', { onsubmit: submit, novalidate: true },
        pass.fields, relays.el, error, h('div', { class: 'row' }, button))));
    pass.first.focus();
  };

  const restore = () => {
    const words = h('textarea', {
      rows: 3, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', required: true,
    });
    const pass = passphraseFields();
    const relays = relayChoice();
    const error = alertBox();
    const button = h('button', { class: 'primary', type: 'submit' }, 'Restore account');
    const title = h('h1', { id: 'onboard-title', tabindex: '-1' }, 'Restore your account');
    const submit = async (e) => {
      e.preventDefault();
      const typed = words.value.trim().toLowerCase().split(/\s+/).join(' ');
      const count = typed ? typed.split(' ').length : 0;
      let problem = count === 12 || count === 24 ? '' : `A recovery phrase has 12 or 24 words; this has ${count}.`;
      problem = problem || pass.check() || relays.check();
      showError(error, problem);
      if (problem) return;
      busy(button, true, 'Restoring…');
      try {
        done(await post('/api/setup', { phrase: typed, passphrase: pass.value(), relays: relays.value() }));
      } catch (err) {
        busy(button, false);
        showError(error, errorText(err));
      }
    };
    replace(root, screen('onboard-title',
      title,
      h('p', null, 'Type the 12 or 24 words of your recovery phrase, in order. ',
        'Messages are not restored: they live on the computer that had them.'),
      h('form', { onsubmit: submit, novalidate: true },
        field('Recovery phrase', words),
        pass.fields,
        relays.el,
        error,
        h('div', { class: 'row' },
          h('button', { type: 'button', onclick: welcome }, 'Back'),
          button))));
    words.focus();
  };

  welcome();
}

/** Locked: ask for the passphrase. done() once unlocked. */
export function renderLocked(root, done) {
  const input = passInput('current-password');
  const error = alertBox();
  const button = h('button', { class: 'primary', type: 'submit' }, 'Unlock');
  const submit = async (e) => {
    e.preventDefault();
    if (!input.value) {
      showError(error, 'Type your passphrase.');
      return;
    }
    busy(button, true, 'Unlocking…');
    try {
      const session = await post('/api/unlock', { passphrase: input.value });
      input.value = '';
      done(session);
    } catch (err) {
      busy(button, false);
      const text = err instanceof ApiError && err.code === 'wrong_passphrase'
        ? 'Wrong passphrase. Try again.' : errorText(err);
      showError(error, text);
      input.select();
      input.focus();
    }
  };
  replace(root, screen('onboard-title',
    h('h1', { id: 'onboard-title' }, icon('lock'), ' X Chat is locked'),
    h('p', null, 'Type your passphrase to open your messages.'),
    h('form', { onsubmit: submit, novalidate: true },
      field('Passphrase', input), error, h('div', { class: 'row' }, button))));
  input.focus();
}

/** No token in this tab: the user must open the login URL that `xchat up` printed. */
export function renderNoToken(root, ended) {
  replace(root, screen('onboard-title',
    h('h1', { id: 'onboard-title' }, ended ? 'This session has ended' : 'Open your login link'),
    h('p', null, ended
      ? 'Your X Chat node no longer accepts this page\'s key: it was revoked (its api-token file was deleted), or another X Chat home now runs on this port. '
      : 'X Chat Web opens from the link that your node prints when it starts. '),
    h('p', null, 'Open the link shown by ', h('code', null, 'xchat up'),
      ' (it looks like ', h('code', null, 'http://127.0.0.1:7440/#token=…'), ').'),
    ended ? h('p', null, 'Nothing you typed is lost: drafts and queued messages come back when you open the link in this tab.') : null));
}
