#!/usr/bin/env python3
"""Reads an MLflow tracking server through its REST API only (no MLflow client library), for
core/track/bench/mlflow.sh:

  mlflow_rest.py summary URI EXPERIMENT        runs, tags, params, curves and artifacts
  mlflow_rest.py count URI EXPERIMENT STORE    metric points on the server vs the local store
  mlflow_rest.py fit STORE EXPERIMENT          training seconds (fit_seconds) per local run
"""

import json
import os
import sys
import urllib.parse
import urllib.request


def call(uri, api, query=None, body=None):
    url = f"{uri}/api/2.0/mlflow/{api}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def runs_of(uri, experiment):
    exp = call(uri, "experiments/get-by-name", {"experiment_name": experiment})["experiment"]
    runs, token = [], None
    while True:
        body = {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
        if token:
            body["page_token"] = token
        page = call(uri, "runs/search", body=body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return exp, runs


def tags(run):
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def history(uri, run_id, key):
    return call(uri, "metrics/get-history", {"run_id": run_id, "metric_key": key}).get("metrics", [])


def artifacts(uri, run_id, path=""):
    q = {"run_id": run_id}
    if path:
        q["path"] = path
    out = []
    for f in call(uri, "artifacts/list", q).get("files", []):
        if f.get("is_dir"):
            out += artifacts(uri, run_id, f["path"])
        else:
            out.append((f["path"], int(f.get("file_size", 0))))
    return out


def summary(uri, experiment):
    exp, runs = runs_of(uri, experiment)
    print(f"experiment '{experiment}' (id {exp['experiment_id']}, artifacts at {exp['artifact_location']}): {len(runs)} runs")
    for r in sorted(runs, key=lambda r: r["info"]["start_time"]):
        info, t = r["info"], tags(r)
        print(f"\n- {info['run_name']}  [{info['status']}]  run_id {info['run_id']}")
        keys = ["pulse.kind", "mlflow.parentRunId", "mlflow.user", "mlflow.source.git.commit",
                "pulse.run_id", "pulse.trial_id", "pulse.model", "pulse.dataset", "pulse.seed"]
        print("  tags: " + ", ".join(f"{k}={t[k]}" for k in keys if k in t))
        params = r["data"].get("params", [])
        if params:
            shown = [p for p in params if p["key"].startswith(("models.", "eval.valid_metric", "split.type"))][:6]
            print(f"  params: {len(params)} (e.g. " + ", ".join(f"{p['key']}={p['value']}" for p in shown) + ")")
        metrics = r["data"].get("metrics", [])
        if metrics:
            latest = {m["key"]: m["value"] for m in metrics}
            tests = {k: round(v, 4) for k, v in latest.items() if k.startswith("test/")}
            print(f"  latest test metrics: {tests}")
            for key in ("train/loss", "valid/ndcg_at_10"):
                if key in latest:
                    pts = history(uri, info["run_id"], key)
                    curve = ", ".join(f"{p['step']}:{p['value']:.4f}" for p in pts[:3])
                    print(f"  {key}: {len(pts)} points (step:value {curve}, …, "
                          f"{pts[-1]['step']}:{pts[-1]['value']:.4f})")
        if t.get("pulse.kind") == "run":
            files = artifacts(uri, info["run_id"])
            print("  artifacts: " + ", ".join(f"{p} ({n} B)" for p, n in files))


def local_runs(store, experiment):
    base = os.path.join(store, experiment)
    for d in sorted(os.listdir(base)):
        path = os.path.join(base, d)
        if os.path.isfile(os.path.join(path, "run.json")):
            points = []
            with open(os.path.join(path, "metrics.jsonl")) as f:
                for line in f:
                    if line.strip():
                        m = json.loads(line)
                        points.append(m)
            yield d, path, points


def sanitize(key):
    return key.replace("@", "_at_")


def count(uri, experiment, store):
    _, runs = runs_of(uri, experiment)
    by_pulse_id = {}
    for r in runs:
        pid = tags(r).get("pulse.run_id")
        if pid:
            by_pulse_id.setdefault(pid, []).append(r)
    total_local = total_server = 0
    ok = True
    for run_id, _, points in local_runs(store, experiment):
        remote = by_pulse_id.get(run_id, [])
        if len(remote) != 1:
            print(f"{run_id}: {len(remote)} MLflow runs (want 1)")
            ok = False
            continue
        rid = remote[0]["info"]["run_id"]
        want = {}
        for m in points:
            k = (sanitize(m["key"]), m["step"], m["timestamp"], m["value"])
            want[k] = want.get(k, 0) + 1
        got = {}
        for key in sorted({k[0] for k in want}):
            for p in history(uri, rid, key):
                k = (key, p.get("step", 0), p["timestamp"], p["value"])
                got[k] = got.get(k, 0) + 1
        n_local, n_server = sum(want.values()), sum(got.values())
        same = want == got
        ok &= same
        total_local += n_local
        total_server += n_server
        print(f"  run {run_id}: local {n_local:4d} points, server {n_server:4d} points, "
              f"{'identical' if same else 'DIFFERENT'}")
        if not same:
            for k in sorted(set(want) | set(got), key=str):
                if want.get(k) != got.get(k):
                    print(f"    {k}: local {want.get(k, 0)}, server {got.get(k, 0)}")
    print(f"total: local store {total_local} metric points, MLflow server {total_server}; "
          f"every point exactly once: {'yes' if ok and total_local == total_server else 'NO'}")
    return 0 if ok else 1


def fit(store, experiment):
    for run_id, path, points in local_runs(store, experiment):
        secs = [m["value"] for m in points if m["key"] == "fit_seconds"]
        run = json.load(open(os.path.join(path, "run.json")))
        print(f"{run_id} {run['model']} {secs[-1] if secs else float('nan'):.3f}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "summary":
        summary(*args)
    elif cmd == "count":
        sys.exit(count(*args))
    elif cmd == "fit":
        fit(*args)
    else:
        sys.exit(__doc__)
