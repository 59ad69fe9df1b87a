// Loads something from the API whenever `key` changes (an event said it did) and, with `everyMs`,
// on a timer too (for what changes without an event); keeps the last answer and the last error.
// An answer that arrives after the view moved on is dropped.
import { useEffect, useState } from "react";

export function usePoll<T>(load: () => Promise<T>, key: string, everyMs?: number) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const run = () =>
      load().then(
        (value) => {
          if (!live) return;
          setData(value);
          setError(null);
        },
        (e: Error) => live && setError(e.message),
      );
    run();
    const timer = everyMs ? setInterval(run, everyMs) : undefined;
    return () => {
      live = false;
      clearInterval(timer);
    };
    // `load` is a new closure every render; `key` says when it means something new.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, everyMs]);
  return { data, error };
}
