import { describe, expect, it } from "vitest";
import { bytes, consensusSummary, ms, percent, rate, shortId, successRate } from "./format";

describe("format", () => {
  it("scales bytes by thousands", () => {
    expect(bytes(512)).toBe("512 B");
    expect(bytes(9_400_000)).toBe("9.4 MB");
    expect(bytes(2_500_000_000)).toBe("2.5 GB");
  });
  it("writes rates, durations and percents at a readable precision", () => {
    expect(rate(3.25)).toBe("3.3/s");
    expect(rate(950)).toBe("950/s");
    expect(rate(31_362)).toBe("31.4k/s");
    expect(rate(678_447)).toBe("678.4k/s");
    expect(rate(1_250_000)).toBe("1.25M/s");
    expect(ms(0.76)).toBe("0.76 ms");
    expect(ms(44.5)).toBe("45 ms");
    expect(ms(1500)).toBe("1.50 s");
    expect(percent(0.5)).toBe("0.50%");
    expect(percent(78.2)).toBe("78.2%");
  });
  it("has no success rate before anything finished", () => {
    expect(successRate(0, 0)).toBeNull();
    expect(successRate(3, 1)).toBe(75);
  });
  it("shortens ids but keeps their ends", () => {
    expect(shortId("0192f0c4-6d1b-7c8e-9a41-5b2d7e0f3a10")).toBe("0192f0c4…3a10");
    expect(shortId("short")).toBe("short");
  });
});

describe("consensusSummary", () => {
  it("says what was asked and how the votes stand", () => {
    const votes = [{ agreed: true }, { agreed: false }, { agreed: true }];
    expect(consensusSummary({ replicas: 3, quorum: 2, vote: "/answer", votes })).toBe(
      "3 replicas, quorum 2, voting on /answer: 2 of 3 votes agree",
    );
    expect(consensusSummary({ replicas: 3, quorum: 3, votes: [{ agreed: false }] })).toBe(
      "3 replicas, quorum 3, voting on the whole result: 1 vote, none agreed yet",
    );
  });
  it("is null for a plain task", () => {
    expect(consensusSummary({})).toBeNull();
  });
});
