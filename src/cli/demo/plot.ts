// The demo's loss-curve picture: metrics.jsonl → vega-lite spec → SVG (vega, no browser) → PNG (resvg).
import { writeFileSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vl from 'vega-lite';

export interface CurvePoint {
  step: number;
  loss: number;
  series: string;
}

/** Writes a PNG line chart of loss by step, one line per series. */
export async function writeLossCurve(points: readonly CurvePoint[], path: string, title: string): Promise<void> {
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 640,
    height: 320,
    data: { values: points as CurvePoint[] },
    mark: { type: 'line', point: { size: 12 } },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss (nats per trained token)' },
      color: { field: 'series', type: 'nominal', title: null },
    },
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, { fitTo: { mode: 'width', value: 1280 }, background: 'white', font: { loadSystemFonts: true } }).render().asPng();
  writeFileSync(path, png);
}
