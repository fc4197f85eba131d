// Loss-curve pictures for the demo and for every `sftkit run`: points → vega-lite spec → SVG (vega, no
// browser) → PNG (resvg), written atomically. vega is loaded on first use, so commands that draw nothing
// do not pay for it.
import type { TopLevelSpec } from 'vega-lite';
import { writeFileAtomicSync } from '../../formats/write-file.ts';

export interface CurvePoint {
  step: number;
  loss: number;
  series: string;
}

export interface LrPoint {
  step: number;
  lr: number;
}

/** Width of the written PNG in pixels (the chart is drawn at half that and scaled 2×). */
export const CURVE_PNG_WIDTH = 1280;

/** A PNG line chart of loss by step (one line per series), with the learning rate in a panel below when given. */
export async function renderLossCurve(points: readonly CurvePoint[], title: string, lr: readonly LrPoint[] = []): Promise<Uint8Array> {
  const vega = await import('vega');
  const vl = await import('vega-lite');
  const { Resvg } = await import('@resvg/resvg-js');
  const lossChart = {
    width: 640,
    height: 320,
    data: { values: points as CurvePoint[] },
    mark: { type: 'line', point: { size: 12 } },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss (nats per trained token)' },
      color: { field: 'series', type: 'nominal', title: null },
    },
  } as const;
  const spec: TopLevelSpec =
    lr.length === 0
      ? { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, ...lossChart }
      : {
          $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
          title,
          vconcat: [
            lossChart,
            {
              width: 640,
              height: 120,
              data: { values: lr as LrPoint[] },
              mark: { type: 'line' },
              encoding: {
                x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
                y: { field: 'lr', type: 'quantitative', title: 'learning rate', axis: { format: '.1e' } },
              },
            },
          ],
        };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return new Resvg(svg, { fitTo: { mode: 'width', value: CURVE_PNG_WIDTH }, background: 'white', font: { loadSystemFonts: true } }).render().asPng();
}

/** Writes renderLossCurve's PNG to `path` (temp file, then rename). */
export async function writeLossCurve(points: readonly CurvePoint[], path: string, title: string, lr: readonly LrPoint[] = []): Promise<void> {
  writeFileAtomicSync(path, await renderLossCurve(points, title, lr));
}
