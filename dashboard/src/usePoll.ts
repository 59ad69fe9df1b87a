// Loads something from the API: at once when `key` (what to load: a view, its filter) changes,
// again when `version` changes (an event said it did) and, with `everyMs`, on a timer too (for
// what changes without an event). Reloads are coalesced (`coalesce.ts`): one at a time, at most one
// every RELOAD_GAP_MS, the last change always loaded. Keeps the last answer and the last error; an
// answer for an earlier key is dropped.
import { useEffect, useRef, useState } from "react";
import { Coalescer } from "./coalesce";

/** Reloads of one view start at least this far apart. */
export const RELOAD_GAP_MS = 500;

export function usePoll<T>(load: () => Promise<T>, key: string, everyMs?: number, version?: number) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reloads = useRef<Coalescer | null>(null);
  useEffect(() => {
    let live = true;
    const coalescer = new Coalescer(
      () =>
        load().then(
          (value) => {
            if (!live) return;
            setData(value);
            setError(null);
          },
          (e: Error) => {
            if (live) setError(e.message);
          },
        ),
      RELOAD_GAP_MS,
    );
    reloads.current = coalescer;
    coalescer.request();
    const timer = everyMs ? setInterval(() => coalescer.request(), everyMs) : undefined;
    return () => {
      live = false;
      coalescer.stop();
      clearInterval(timer);
    };
    // `load` is a new closure every render; `key` says when it means something new.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, everyMs]);
  // A change of `version`: the same query again, coalesced (at mount the effect above has just
  // asked).
  const seen = useRef(version);
  useEffect(() => {
    if (seen.current === version) return;
    seen.current = version;
    reloads.current?.request();
  }, [version]);
  return { data, error };
}
