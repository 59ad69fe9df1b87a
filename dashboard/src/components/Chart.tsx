// A uPlot chart that follows its data. The plot is made once per series layout and fed new
// columns on every update; it takes its container's width.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Columns } from "../series";

export interface Line {
  label: string;
  color: string;
  unit?: string;
}

const format = (unit?: string) => (_: uPlot, v: number | null) =>
  v == null ? "-" : `${Number.isInteger(v) ? v : v.toFixed(2)}${unit ?? ""}`;

export function Chart({ title, lines, data, height = 180 }: { title: string; lines: Line[]; data: Columns; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const layout = lines.map((l) => l.label).join("|");

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 200),
      height,
      series: [{}, ...lines.map((l) => ({ label: l.label, stroke: l.color, width: 1.5, value: format(l.unit) }))],
      axes: [{}, { size: 60 }],
      scales: { x: { time: true } },
      legend: { live: false },
    };
    plot.current = new uPlot(options, data as uPlot.AlignedData, element);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(element.clientWidth, 200), height }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // Rebuilt only when the series change; data flows in through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [layout, height]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return (
    <section className="chart">
      <h3>{title}</h3>
      <div ref={box} data-chart={title} />
    </section>
  );
}
