// A WebSocket to the hub that reconnects by itself, with backoff, for as long as the page wants it.
import { wsProtocols } from "./auth";

export type Status = "connecting" | "open" | "closed";

/** Wait before reconnect attempt `n` (0-based): 0.5 s doubling to 10 s. */
export function backoff(n: number): number {
  return Math.min(500 * 2 ** n, 10_000);
}

export function wsUrl(path: string, location: { protocol: string; host: string }): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export function connect(
  path: string,
  onMessage: (data: unknown) => void,
  onStatus: (status: Status) => void,
): () => void {
  let socket: WebSocket | null = null;
  let attempt = 0;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const open = () => {
    onStatus("connecting");
    socket = new WebSocket(wsUrl(path, window.location), wsProtocols());
    socket.onopen = () => {
      attempt = 0;
      onStatus("open");
    };
    socket.onmessage = (event) => onMessage(JSON.parse(event.data as string));
    socket.onclose = () => {
      onStatus("closed");
      if (!stopped) timer = setTimeout(open, backoff(attempt++));
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    socket?.close();
  };
}
