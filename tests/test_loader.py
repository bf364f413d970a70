"""Tests of hepnb.loader on small synthetic datasets (no detector): values, epochs, splits, joins, errors, memory."""
import json, subprocess, sys, textwrap
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch

import hepnb.loader as L
from hepnb.core import HepnbError
from hepnb.dataset import write_dataset, write_derived
from hepnb.loader import (SPLITS, SYNTHETIC_HIT_FEATURES, EventStream, LoaderConfig, make_loader, split_of,
                          splitmix64, synthetic_dataset)

N_EVENTS = 3000
CFG = LoaderConfig(hit_features=SYNTHETIC_HIT_FEATURES, hit_targets=["hits_label"],
                   event_columns=["target_x", "target_y", "label", "n_true"], group_columns=["group_e"], batch_size=100)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    "3 shards x 4 row groups of 250 events, ~10 hits each, some events without hits."
    return synthetic_dataset(tmp_path_factory.mktemp("loader") / "base", N_EVENTS, seed=5, mean_hits=10,
                             rows_per_file=1000, row_group_size=250, chunk=700)


@pytest.fixture(scope="module")
def ref(ds):
    "The same columns read directly with pyarrow, as Python values per event id."
    t = ds.read(CFG.columns)
    return {c: t.column(c).to_pylist() for c in t.column_names}


def ids_of(batches):
    return torch.cat([b.event_id for b in batches]).numpy()


def by_id(ref):
    return {e: i for i, e in enumerate(ref["event_id"])}


def check_event_values(b, ref, row, i):
    "Event columns of batch row `row` equal reference event `i` (null -> NaN / -1 with valid False)."
    for c in CFG.event_columns:
        want = ref[c][i]
        assert bool(b.valid[c][row]) == (want is not None)
        got = b.events[c][row].item()
        if want is None:
            assert (np.isnan(got) if b.events[c].is_floating_point() else got == -1)
        else:
            assert got == pytest.approx(want, rel=1e-6)


def test_padded_equals_parquet(ds, ref):
    batches = list(make_loader(ds, CFG))
    assert [len(b) for b in batches] == [100] * 30
    pos = by_id(ref)
    for b in batches:
        assert b.x.dtype == torch.float32 and b.mask.dtype == torch.bool and b.event_id.dtype == torch.int64
        assert b.x.shape[:2] == b.mask.shape and b.x.shape[2] == len(SYNTHETIC_HIT_FEATURES)
        assert b.x.shape[1] == int(b.n_hits.max())
        for row, e in enumerate(b.event_id.tolist()):
            i = pos[e]
            n = len(ref["hits_u"][i])
            assert int(b.n_hits[row]) == n and b.mask[row].sum() == n and b.mask[row, :n].all()
            for j, c in enumerate(SYNTHETIC_HIT_FEATURES):
                assert b.x[row, :n, j].tolist() == pytest.approx(ref[c][i])
            assert (b.x[row, n:] == 0).all()
            assert b.hit_targets["hits_label"][row, :n].tolist() == ref["hits_label"][i]
            assert (b.hit_targets["hits_label"][row, n:] == -100).all()
            g = len(ref["group_e"][i])
            assert b.groups["group_e"][row, :g].tolist() == pytest.approx(ref["group_e"][i]) and b.group_mask[row].sum() == g
            check_event_values(b, ref, row, i)
    assert ids_of(batches).tolist() == ref["event_id"]   # no shuffle: stored order


def test_packed_equals_parquet(ds, ref):
    batches = list(make_loader(ds, replace(CFG, layout="packed", batch_size=128)))
    assert [len(b) for b in batches] == [128] * 23 + [56]
    pos = by_id(ref)
    for b in batches:
        assert b.mask is None and b.offsets.dtype == torch.int64 and b.offsets[0] == 0
        assert b.x.shape == (int(b.offsets[-1]), len(SYNTHETIC_HIT_FEATURES))
        assert torch.equal(b.batch_index, torch.repeat_interleave(torch.arange(len(b)), torch.diff(b.offsets)))
        ids = b.event_id.tolist()
        rows = [pos[e] for e in ids]
        for j, c in enumerate(SYNTHETIC_HIT_FEATURES):
            assert b.x[:, j].tolist() == pytest.approx([v for i in rows for v in ref[c][i]])
        assert b.hit_targets["hits_label"].tolist() == [v for i in rows for v in ref["hits_label"][i]]
        assert b.groups["group_e"].tolist() == pytest.approx([v for i in rows for v in ref["group_e"][i]])
        assert torch.diff(b.group_offsets).tolist() == [len(ref["group_e"][i]) for i in rows]
        for row, i in enumerate(rows): check_event_values(b, ref, row, i)


def test_max_hits_truncates_first_hits(ds, ref):
    pos = by_id(ref)
    for layout in L.LAYOUTS:
        for b in EventStream(ds, replace(CFG, max_hits=4, layout=layout, batch_size=500)):
            kept = torch.clamp(b.n_hits, max=4)
            if layout == "padded": assert b.x.shape[1] <= 4 and torch.equal(b.mask.sum(1), kept)
            else: assert torch.equal(torch.diff(b.offsets), kept)
            e = b.event_id.tolist()
            first = [v for r, x in enumerate(e) for v in ref["hits_e"][pos[x]][:4]]
            got = b.x[..., 2][b.mask] if layout == "padded" else b.x[:, 2]
            assert got.tolist() == pytest.approx(first)


@pytest.mark.parametrize("layout", L.LAYOUTS)
@pytest.mark.parametrize("shuffle, buffer, read_rows", [(True, 400, 100), (True, 1000, 250), (False, 0, 100)])
def test_pool_appends_and_compacts_without_mixing_events(ds, ref, layout, shuffle, buffer, read_rows):
    """The pool appends chunks in place and moves the kept rows when its room is used up (several times here, with
    chunks of 100-250 events): every event of every batch carries its own hits, targets and groups."""
    cfg = replace(CFG, shuffle=shuffle, shuffle_buffer=buffer, read_rows=read_rows, layout=layout, batch_size=64)
    pos, seen = by_id(ref), []
    for b in EventStream(ds, cfg):
        rows = [pos[e] for e in b.event_id.tolist()]
        seen += b.event_id.tolist()
        hits = [v for i in rows for v in ref["hits_e"][i]]
        labels = [v for i in rows for v in ref["hits_label"][i]]
        groups = [v for i in rows for v in ref["group_e"][i]]
        if layout == "padded":
            assert b.x[..., 2][b.mask].tolist() == pytest.approx(hits)
            assert b.hit_targets["hits_label"][b.mask].tolist() == labels
            assert (b.x[~b.mask] == 0).all() and (b.hit_targets["hits_label"][~b.mask] == -100).all()
            assert b.groups["group_e"][b.group_mask].tolist() == pytest.approx(groups)
        else:
            assert b.x[:, 2].tolist() == pytest.approx(hits) and b.hit_targets["hits_label"].tolist() == labels
            assert b.groups["group_e"].tolist() == pytest.approx(groups)
        for row, i in enumerate(rows): check_event_values(b, ref, row, i)
    assert sorted(seen) == sorted(ref["event_id"])
    assert (seen != ref["event_id"]) == shuffle


@pytest.mark.parametrize("workers", [0, 2])
def test_each_event_once_per_epoch_shuffled(ds, ref, workers):
    cfg = replace(CFG, shuffle=True, shuffle_buffer=400, num_workers=workers, layout="packed", batch_size=64)
    loader = make_loader(ds, cfg)
    orders = []
    for epoch in range(2):
        loader.dataset.set_epoch(epoch)
        batches = list(loader)
        ids = ids_of(batches)
        assert len(ids) == N_EVENTS and sorted(ids.tolist()) == sorted(ref["event_id"])
        orders.append(ids)
        pos = by_id(ref)   # values travel with their event through the shuffle and the workers
        b = batches[3]
        assert b.x[:, 2].tolist() == pytest.approx([v for e in b.event_id.tolist() for v in ref["hits_e"][pos[e]]])
    assert (orders[0] != orders[1]).any()
    assert np.abs(np.diff(orders[0])).mean() > 50 * 7      # shuffled, not in stored order (ids step by 7)


def test_two_workers_persistent_and_derived(ds, tmp_path):
    "Workers (forkserver) with persistent workers see set_epoch; a key-joined derived column arrives intact."
    t = ds.read(["event_id", "target_x"])
    pred = write_derived(tmp_path / "p", t.take(np.random.default_rng(1).permutation(t.num_rows))
                         .rename_columns(["event_id", "pred"]), base=ds, producer={"name": "test"})
    cfg = replace(CFG, event_columns=["target_x", "pred"], shuffle=True, num_workers=2, persistent_workers=True)
    loader = make_loader(ds, cfg, derived=[pred])
    assert loader.multiprocessing_context.get_start_method() in ("forkserver", "spawn")
    seen = []
    for epoch in range(2):
        loader.dataset.set_epoch(epoch)
        bs = list(loader)
        for b in bs: assert torch.equal(b.events["pred"], b.events["target_x"])
        seen.append(ids_of(bs))
        assert len(seen[-1]) == N_EVENTS and len(set(seen[-1].tolist())) == N_EVENTS
    assert (seen[0] != seen[1]).any()


def test_same_seed_same_order(ds):
    def order(seed, epoch=0, bs=100):
        st = EventStream(ds, replace(CFG, shuffle=True, shuffle_buffer=300, seed=seed, batch_size=bs))
        st.set_epoch(epoch)
        return ids_of(st)
    a = order(1)
    assert np.array_equal(a, order(1)) and not np.array_equal(a, order(2)) and not np.array_equal(a, order(1, epoch=1))


def test_splitmix64_reference_values():
    # SplitMix64 reference outputs for the generator seeded with 0: state advances by the golden ratio.
    assert int(splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF
    golden = 0x9E3779B97F4A7C15
    assert int(splitmix64(np.uint64(golden))) == 0x6E789E6AA1B965F4
    assert int(splitmix64(np.uint64((2 * golden) % 2**64))) == 0x06C45D188009454F
    # and a frozen split assignment: stable across runs, machines and versions
    assert split_of(np.arange(12), seed=0).tolist() == split_of(np.arange(12)[::-1], seed=0)[::-1].tolist()
    assert split_of(np.arange(12), seed=0).tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert split_of(np.arange(12) * 1000 + 7, (0.5, 0.3, 0.2), seed=42).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 2, 0, 1]


def test_split_fractions_and_seed():
    ids = np.arange(10**5, dtype=np.int64) * 13 - 5000
    for fr in [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.7, 0.3, 0.0)]:
        c = split_of(ids, fr, seed=9)
        assert np.allclose(np.bincount(c, minlength=3) / len(c), fr, atol=0.006)
    assert (split_of(ids, seed=1) != split_of(ids, seed=2)).mean() > 0.2
    with pytest.raises(HepnbError): split_of(ids, (0.5, 0.5, 0.5))


def test_splits_disjoint_cover_and_layout_independent(ds, tmp_path):
    def sets(d, **kw):
        return {s: set(ids_of(EventStream(d, replace(CFG, split=s, **kw))).tolist()) for s in SPLITS}
    a = sets(ds)
    assert sum(len(v) for v in a.values()) == N_EVENTS and set().union(*a.values()) == set(ds.read(["event_id"]).column(0).to_pylist())
    for s, f in zip(SPLITS, CFG.fractions): assert abs(len(a[s]) / N_EVENTS - f) < 0.03
    assert sets(ds, batch_size=7) == a and sets(ds, shuffle=True, seed=3) == a
    relaid = write_dataset(tmp_path / "relaid", ds.read().take(np.random.default_rng(0).permutation(N_EVENTS)),
                           rows_per_file=700, row_group_size=90)
    assert sets(relaid) == a
    st = EventStream(ds, replace(CFG, split="val"))
    assert st.num_events() == len(a["val"])


def test_ranks_partition_the_events(ds):
    parts = [set(ids_of(EventStream(ds, replace(CFG, shuffle=True, rank=r, world_size=3))).tolist()) for r in range(3)]
    assert sum(map(len, parts)) == N_EVENTS and len(set().union(*parts)) == N_EVENTS


def _pred_table(ds):
    t = ds.read(["event_id", "target_x", "hits_label"])
    return pa.table({"event_id": t.column("event_id"), "pred_x": t.column("target_x"), "pred_label": t.column("hits_label")})


def _check_join(st):
    n = 0
    for b in st:
        assert torch.equal(b.events["pred_x"], b.events["target_x"])
        assert torch.equal(b.hit_targets["pred_label"], b.hit_targets["hits_label"])
        n += len(b)
    return n


def test_derived_aligned_zips_without_index(ds, tmp_path, monkeypatch):
    p = write_derived(tmp_path / "p", _pred_table(ds), base=ds, producer={"name": "t"}, rows_per_file=1000, row_group_size=64)
    def no_index(*a, **k): raise AssertionError("aligned derived data must not be key-joined")
    monkeypatch.setattr(L, "_KeyIndex", no_index)
    cfg = replace(CFG, event_columns=["target_x", "pred_x"], hit_targets=["hits_label", "pred_label"], split="train", shuffle=True)
    st = EventStream(ds, cfg, derived=[p])
    assert st.aligned == [True]
    assert _check_join(st) == st.num_events()


@pytest.mark.parametrize("layout", ["reordered_in_files", "other_shards"])
def test_derived_unaligned_key_join(ds, tmp_path, layout):
    t = _pred_table(ds)
    if layout == "reordered_in_files":   # same rows per file, but another order: detected per chunk, falls back
        perm = np.concatenate([np.random.default_rng(i).permutation(1000) + 1000 * i for i in range(3)])
        p = write_derived(tmp_path / "p", t.take(perm), base=ds, producer={"name": "t"}, rows_per_file=1000)
    else:
        p = write_derived(tmp_path / "p", t.take(np.random.default_rng(0).permutation(N_EVENTS)), base=ds,
                          producer={"name": "t"}, rows_per_file=1300, row_group_size=200)
    cfg = replace(CFG, event_columns=["target_x", "pred_x"], hit_targets=["hits_label", "pred_label"], layout="packed")
    st = EventStream(ds, cfg, derived=[p])
    assert st.aligned == [layout == "reordered_in_files"]
    assert _check_join(st) == N_EVENTS


def test_derived_missing_event_is_an_error(ds, tmp_path):
    t = _pred_table(ds)
    missing = t.column("event_id")[1234].as_py()
    p = write_derived(tmp_path / "p", t.filter(pa.compute.not_equal(t.column("event_id"), missing)), base=ds, producer={"name": "t"})
    st = EventStream(ds, replace(CFG, event_columns=["pred_x"]), derived=[p])
    with pytest.raises(HepnbError, match=rf"{p.path}.*event_id {missing}"):
        list(st)
    with pytest.raises(HepnbError, match=rf"{p.path}.*event_id {missing}"):   # raised in a worker, same type
        list(make_loader(ds, replace(CFG, event_columns=["pred_x"], num_workers=2, persistent_workers=False), derived=[p]))


def test_derived_errors(ds, tmp_path):
    other = synthetic_dataset(tmp_path / "other", 50, seed=9)
    p_other = write_derived(tmp_path / "po", other.read(["event_id", "target_x"]).rename_columns(["event_id", "q"]),
                            base=other, producer={"name": "t"})
    with pytest.raises(HepnbError, match="another base"):
        EventStream(ds, CFG, derived=[p_other])
    with pytest.raises(HepnbError, match="kind 'derived'"):
        EventStream(ds, CFG, derived=[other])
    dup = write_derived(tmp_path / "dup", ds.read(["event_id", "target_x"]), base=ds, producer={"name": "t"})
    with pytest.raises(HepnbError, match=r"target_x.*rename"):
        EventStream(ds, CFG, derived=[dup])


@pytest.mark.parametrize("change, key", [
    (dict(hit_features=["hits_u", "nope"]), "nope"),
    (dict(hit_features=["hits_u", "target_x"]), "target_x"),        # not a list column
    (dict(event_columns=["group_e"], group_columns=[]), "group_e"),  # a list column as an event column
    (dict(layout="ragged"), "layout"),
    (dict(fractions=(0.7, 0.2, 0.2)), "fractions"),
    (dict(split="dev"), "split"),
    (dict(event_columns=["event_id"]), "event_id"),
])
def test_bad_config_names_dataset_and_column(ds, change, key):
    with pytest.raises(HepnbError) as e:
        EventStream(ds, replace(CFG, **change))
    assert str(ds.path) in str(e.value) and key in str(e.value)


def test_mismatched_hit_lengths_name_column_and_event(ds):
    st = EventStream(ds, replace(CFG, hit_features=["hits_u", "group_e"], group_columns=[]))
    with pytest.raises(HepnbError, match=r"column group_e.*event_id \d+"):
        next(iter(st))


def test_batch_to_device_and_dtype(ds):
    b = next(iter(EventStream(ds, replace(CFG, dtype="float64"))))
    assert b.x.dtype == torch.float64 and b.events["label"].dtype == torch.int64 and b.valid["label"].dtype == torch.bool
    c = b.to("cpu")
    assert torch.equal(c.x, b.x) and c.events.keys() == b.events.keys() and c.layout == "padded"


MEM_CHILD = textwrap.dedent("""
    import json, resource, sys
    import psutil
    def hwm():
        # Peak RSS of this process image in bytes: VmHWM (reset by exec). Not ru_maxrss: Linux carries the
        # forking parent's peak over fork+exec, so a fat parent would hide the child's own peak.
        try:
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024
        except OSError: pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    from hepnb.loader import EventStream, LoaderConfig, SYNTHETIC_HIT_FEATURES
    cfg = LoaderConfig(hit_features=SYNTHETIC_HIT_FEATURES, event_columns=["target_x", "target_y"],
                       hit_targets=["hits_label"], batch_size=256, shuffle=True, shuffle_buffer=5000, read_rows=4096)
    st = EventStream(sys.argv[1], cfg)
    proc = psutil.Process()
    base = top = proc.memory_info().rss          # current RSS after imports and opening the dataset
    n = hits = 0
    for b in st:
        n += len(b); hits += int(b.mask.sum())
        top = max(top, proc.memory_info().rss)   # sampled per batch: the loop's own peak, not the imports'
    peak = hwm()
    print(json.dumps({"events": n, "hits": hits, "rss_base": base, "rss_top": top, "peak": peak}))
""")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_dataset_size(tmp_path):
    n = 10_000
    res = {}
    for k, size in (("N", n), ("10N", 10 * n)):
        d = synthetic_dataset(tmp_path / k, size, seed=1, mean_hits=50, rows_per_file=20_000, row_group_size=5_000)
        out = subprocess.run([sys.executable, "-c", MEM_CHILD, str(d.path)], capture_output=True, text=True, check=True)
        res[k] = json.loads(out.stdout.strip().splitlines()[-1])
        assert res[k]["events"] == size
    ratio = res["10N"]["peak"] / res["N"]["peak"]
    loop = {k: r["rss_top"] - r["rss_base"] for k, r in res.items()}   # what iterating adds on top of the imports
    print(res, ratio, loop)
    assert ratio <= 1.15, res
    # 10x the events (~90 MB of hits on disk for 10N) may not cost more than 48 MiB extra while iterating: a leak per
    # event or batch would cost hundreds (allocator caching varies by ~35 MiB between runs of the whole suite)
    assert loop["10N"] <= loop["N"] + 48 * 2**20, (loop, res)


def _reference_shuffle(ds, cfg, epoch):
    "The documented shuffle on event ids alone: pool = buffer + chunk, permuted; the surplus leaves, the rest stays."
    import pyarrow.parquet as pq
    st = EventStream(ds, cfg)
    rng = np.random.default_rng([cfg.seed, epoch, cfg.rank, 0, 1])
    pool, out = np.zeros(0, np.int64), []
    for fi, g, _, _ in st._my_units(epoch, 0, 1):
        ids = pq.ParquetFile(ds.files[fi]).read_row_group(g, columns=["event_id"]).column(0).to_numpy()
        for s in range(0, len(ids), cfg.read_rows):
            pool = np.concatenate([pool, ids[s:s + cfg.read_rows]])
            if len(pool) > cfg.shuffle_buffer:
                perm = rng.permutation(len(pool))
                out.append(pool[perm[:len(pool) - cfg.shuffle_buffer]]); pool = pool[perm[len(pool) - cfg.shuffle_buffer:]]
    if len(pool): out.append(pool[rng.permutation(len(pool))])
    return np.concatenate(out)


@pytest.mark.parametrize("buffer, read_rows", [(400, 8192), (1000, 100), (0, 8192)])
def test_shuffle_order_is_the_documented_buffer(ds, buffer, read_rows):
    "Shuffling moves indices, not data: the order is exactly the buffer algorithm's on event ids, for any batch size."
    for bs in (64, 1000):
        cfg = replace(CFG, shuffle=True, shuffle_buffer=buffer, read_rows=read_rows, batch_size=bs, layout="packed", seed=4)
        st = EventStream(ds, cfg)
        st.set_epoch(1)
        got = ids_of(st)
        assert np.array_equal(got, _reference_shuffle(ds, cfg, 1))


def test_concurrent_iterators_and_early_stop(ds, ref):
    "Two live iterators of one stream do not share buffers; an abandoned iterator stops its reading thread."
    import gc, threading
    st = EventStream(ds, replace(CFG, shuffle=True, shuffle_buffer=400, layout="packed", batch_size=64))
    a = list(st)
    b1, b2 = [], []
    for x, y in zip(iter(st), iter(st)): b1.append(x); b2.append(y)
    pos = by_id(ref)
    for bs in (b1, b2):
        assert np.array_equal(ids_of(bs), ids_of(a))
        for b in bs[::7]:
            assert b.x[:, 2].tolist() == pytest.approx([v for e in b.event_id.tolist() for v in ref["hits_e"][pos[e]]])
    threads = threading.active_count()
    it = iter(st); next(it); it.close()
    it = iter(st); next(it); del it; gc.collect()
    assert threading.active_count() == threads


def test_collate_integer_and_boolean_hit_columns():
    "Narrow, unsigned and boolean hit columns: targets int64 / bool with -100 / False padding, features as floats."
    tab = pa.table({"event_id": pa.array([1, 2], pa.int64()),
                    "a": pa.array([[1.5, 2.5], [3.5]], pa.list_(pa.float32())),
                    "u": pa.array([[200, 1], [7]], pa.list_(pa.uint8())),
                    "i": pa.array([[-5, 300], [2]], pa.list_(pa.int16())),
                    "b": pa.array([[True, False], [True]], pa.list_(pa.bool_()))})
    cfg = LoaderConfig(hit_features=["a", "u", "b"], hit_targets=["u", "i", "b"])
    p = L.collate(tab, cfg)
    assert p.x.dtype == torch.float32 and p.x.tolist() == [[[1.5, 200, 1], [2.5, 1, 0]], [[3.5, 7, 1], [0, 0, 0]]]
    assert p.hit_targets["u"].dtype == torch.int64 and p.hit_targets["u"].tolist() == [[200, 1], [7, -100]]
    assert p.hit_targets["i"].dtype == torch.int64 and p.hit_targets["i"].tolist() == [[-5, 300], [2, -100]]
    assert p.hit_targets["b"].dtype == torch.bool and p.hit_targets["b"].tolist() == [[True, False], [True, False]]
    k = L.collate(tab, replace(cfg, layout="packed"))
    assert k.hit_targets["u"].tolist() == [200, 1, 7] and k.hit_targets["i"].tolist() == [-5, 300, 2]
    assert k.x[:, 1].tolist() == [200, 1, 7] and k.offsets.tolist() == [0, 2, 3]


def test_scratch_is_sized_once_for_the_full_pool():
    "A buffer first asked for a small pool is allocated for the largest pool, so a longer stream does not regrow it."
    sc = L._Scratch(events=1000)
    first = sc.get("x", (500, 3), np.float32, events=100)          # 100 events, 5 hits each
    assert first.shape == (500, 3)
    base = sc["x"]
    assert len(base) >= 1000 * 5 * 3                                 # room for 1000 events of the same size
    again = sc.get("x", (4600, 3), np.float32, events=920)
    assert sc["x"] is base and np.shares_memory(again, base)         # no regrowth up to the full pool


def test_import_asks_arrow_to_return_freed_pages():
    "hepnb sets mimalloc's purge delay before pyarrow loads (an explicit setting wins)."
    code = "import os, hepnb, pyarrow; print(os.environ['MIMALLOC_PURGE_DELAY'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "0"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "MIMALLOC_PURGE_DELAY": "10"}, check=True)
    assert out.stdout.strip() == "10"


FREED = textwrap.dedent("""
    import sys, numpy as np, psutil
    if sys.argv[1] == "hepnb": import hepnb
    p = psutil.Process()
    a = np.ones(16 << 20, np.uint8); del a         # freeing an mmapped 16 MiB block raises glibc's dynamic threshold
    base = p.memory_info().rss
    keep, arrs = [], []
    for i in range(16):
        arrs.append(np.ones(8 << 20, np.uint8))    # 8 MiB arrays (a shuffle pool's size), a small live block after each
        keep.append(np.ones(4096, np.uint8))
    del arrs
    print((p.memory_info().rss - base) / 2**20)
""")


REUSED = textwrap.dedent("""
    import resource, sys, numpy as np
    if sys.argv[1] == "hepnb": import hepnb
    np.ones(1 << 20).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(100):
        a = np.empty(1_300_000, np.uint8)           # a padded batch's size: fresh pages fault, reused ones do not
        a.fill(1)
        del a
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def test_import_lets_batch_sized_arrays_reuse_pages():
    """After `import hepnb` a freed 1.3 MB array's pages serve the next one; with a fixed 128 KiB threshold (what
    hepnb set before) each is mmapped afresh and faulted in again."""
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = lambda **kw: int(subprocess.run([sys.executable, "-c", REUSED, "hepnb"], capture_output=True, text=True,
                                          check=True, env={**env, **kw}).stdout)
    assert run(MALLOC_MMAP_THRESHOLD_="131072") > 10_000     # ~320 page faults per array
    assert run() < 2_000


def test_import_keeps_big_arrays_returnable():
    "After `import hepnb` freed 8 MiB arrays go back to the system; without it glibc keeps them on the heap."
    run = lambda how: float(subprocess.run([sys.executable, "-c", FREED, how], capture_output=True, text=True,
                                           check=True).stdout)
    assert run("plain") > 64            # the behaviour fixed: 128 MiB freed, most of it kept
    assert run("hepnb") < 8
