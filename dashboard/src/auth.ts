// The API token, for a hub with authentication on: asked for once and kept for this browser
// session (sessionStorage: gone when the tab closes). A 401 from the hub asks for it again.

const KEY = "hive.token";
export const UNAUTHORIZED = "hive:unauthorized";

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setToken(value: string): void {
  sessionStorage.setItem(KEY, value.trim());
}

/** The hub refused the token (or there was none): forget it and ask. */
export function refused(): void {
  sessionStorage.removeItem(KEY);
  window.dispatchEvent(new Event(UNAUTHORIZED));
}

/** Headers for a REST call. */
export function authHeaders(): Record<string, string> {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}

/** WebSocket subprotocols: a browser cannot set a header on a WebSocket, so the token travels as
 * the subprotocol `bearer.<token>` beside `hive`, which the hub answers with. */
export function wsProtocols(): string[] | undefined {
  const t = token();
  return t ? ["hive", `bearer.${t}`] : undefined;
}
