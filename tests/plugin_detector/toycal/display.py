"""The toy calorimeter's event browser: the generic navigation (`hepnb.display.Browser`) plus one view, the photons
per sensor, with the true and predicted energies in the title; worst-first by the evaluator's per-event error."""
import numpy as np
import polars as pl
from hepnb.dataset import Dataset, open_dataset
from hepnb.display import Browser, KeyIndex, redraw, select_rows


class EventBrowser(Browser):
    def __init__(self, dataset, predictions: dict | None = None, order_by: str | None = None):
        import ipywidgets as W
        import plotly.graph_objects as go
        ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
        t = ds.read(["event_id", "energy", "npho"])
        self.npho = np.stack(t.column("npho").to_numpy(zero_copy_only=False))
        self.energy = t.column("energy").to_numpy()
        cols = {"row": np.arange(t.num_rows), "energy": self.energy}
        self.pred = {}
        index = KeyIndex(t.column("event_id").to_numpy(), where=str(ds.path))
        for impl, path in (predictions or {}).items():       # {implementation: prediction dataset of toycal.energy}
            p = (path if isinstance(path, Dataset) else open_dataset(path)).read(["event_id", "pred_energy"])
            rows = index.align(p.column("event_id").to_numpy(), where=str(path))      # one prediction per event
            self.pred[impl] = np.full(t.num_rows, np.nan)
            self.pred[impl][rows] = p.column("pred_energy").to_numpy()
            cols[f"rel_error:{impl}"] = np.abs(self.pred[impl] / self.energy - 1)   # the evaluator's per-event quantity
        self.table = pl.DataFrame(cols)
        super().__init__(index, rows=select_rows(self.table, order_by=order_by))
        self.fig = go.FigureWidget(go.Figure(go.Bar(x=np.arange(self.npho.shape[1]), y=np.zeros(self.npho.shape[1]))))
        self.fig.update_layout(xaxis_title="sensor", yaxis_title="photons", height=300)
        self.widget = W.VBox([W.HBox([self.w_prev, self.w_next, self.w_pos, self.w_key]), self.w_status, self.fig])
        self.show(0)

    def render(self):
        row = self.row
        parts = [f"E = {self.energy[row]:.2f} GeV"] + [f"{k}: {v[row]:.2f}" for k, v in self.pred.items()]
        redraw(self.fig, {0: {"y": self.npho[row]}}, {"title.text": f"event {int(self.index.keys[row])}: " + ", ".join(parts)})

    def static_figure(self):
        import plotly.graph_objects as go
        return go.Figure(self.fig)              # what an exported page shows
