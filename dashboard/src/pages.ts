// A listing read to its end: the hub answers a page at a time (agents: 1,000 a page) with the
// cursor of the next, absent on the last.
export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export async function allPages<T>(load: (cursor?: string) => Promise<Page<T>>): Promise<T[]> {
  const all: T[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await load(cursor);
    all.push(...page.items);
    const next = page.next_cursor ?? undefined;
    // The same cursor again would read the same page for ever.
    if (!next || next === cursor) return all;
    cursor = next;
  }
}
