// The node's local API (docs/api.md): JSON over fetch with the bearer token, and the
// WebSocket stream. The token comes from the login URL's fragment (#token=...), is kept in
// sessionStorage (this tab only) and removed from the address bar.

const TOKEN_KEY = 'xchat.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The node could not be reached at all (it is stopped, or the network call failed). */
export class OfflineError extends Error {}

/** What the app does when the API says offline, locked or unauthorized. */
export const hooks = {
  offline() {},
  online() {},
  locked() {},
  unauthorized() {},
};

/** Takes a token from the address bar's fragment, if there is one, into sessionStorage. */
export function takeToken() {
  const found = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (found) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function headers(json) {
  const out = { Authorization: `Bearer ${token()}` };
  if (json) out['Content-Type'] = 'application/json';
  return out;
}

async function send(method, path, body) {
  try {
    return await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    hooks.offline();
    throw new OfflineError('X Chat is not reachable');
  }
}

/** api('GET', '/api/status') -> parsed JSON; ApiError for 4xx/5xx, OfflineError if down. */
export async function api(method, path, body) {
  const response = await send(method, path, body);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || { code: 'http_error', message: response.statusText };
    if (response.status === 423) hooks.locked();
    if (response.status === 401) hooks.unauthorized();
    throw new ApiError(response.status, error.code, error.message);
  }
  hooks.online();
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);

/** An image the API serves (QR codes) as a blob: URL; <img> cannot send the token. */
export async function imageUrl(path) {
  const response = await send('GET', path);
  if (!response.ok) throw new ApiError(response.status, 'http_error', response.statusText);
  return URL.createObjectURL(await response.blob());
}

/**
 * The stream of changes: one WebSocket, reconnected by the app (see App.reconnect). Calls
 * onEvent(event) for every event and onOpen()/onClose() as the socket comes and goes.
 */
export class Stream {
  constructor(onEvent, onOpen, onClose) {
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onClose = onClose;
    this.ws = null;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.close();
    const url = `ws://${location.host}/api/stream?token=${encodeURIComponent(token())}`;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    const decoder = new TextDecoder();
    ws.onmessage = (e) => {
      let event;
      try {
        event = JSON.parse(typeof e.data === 'string' ? e.data : decoder.decode(e.data));
      } catch {
        return;
      }
      if (event.type === 'hello') this.onOpen();
      else this.onEvent(event);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onClose();
    };
  }

  close() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.close();
    }
  }
}
