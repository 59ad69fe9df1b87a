import { describe, expect, it } from "vitest";
import { allPages } from "./pages";

describe("allPages", () => {
  it("follows the cursors to the last page", async () => {
    const pages: Record<string, { items: number[]; next_cursor?: string | null }> = {
      "": { items: [1, 2], next_cursor: "2" },
      "2": { items: [3, 4], next_cursor: "4" },
      "4": { items: [5], next_cursor: null },
    };
    const asked: string[] = [];
    const all = await allPages(async (cursor) => {
      asked.push(cursor ?? "");
      return pages[cursor ?? ""];
    });
    expect(all).toEqual([1, 2, 3, 4, 5]);
    expect(asked).toEqual(["", "2", "4"]);
  });

  it("stops at a cursor that repeats", async () => {
    let calls = 0;
    const all = await allPages(async () => ({ items: [calls++], next_cursor: "same" }));
    expect(all).toEqual([0, 1]);
  });

  it("reads one page when there is no cursor", async () => {
    expect(await allPages(async () => ({ items: ["a"] }))).toEqual(["a"]);
  });
});
