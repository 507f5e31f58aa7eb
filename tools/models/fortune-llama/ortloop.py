"""A plain onnxruntime KV-cache decode loop over an Optimum text-generation-with-past export.

Shared by golden.py, check.py and the benchmark peer; numpy only.
"""
import numpy as np
import onnxruntime as ort


class OrtDecoder:
    def __init__(self, path, threads=0):
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.sess.get_inputs()}
        self.past_names = [n for n in self.inputs if n.startswith("past_key_values.")]
        shape = self.inputs[self.past_names[0]].shape  # [batch, kv_heads, past, head_dim]
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.out_names = [o.name for o in self.sess.get_outputs()]

    def empty_past(self, batch):
        z = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        return {n: z for n in self.past_names}

    def step(self, ids, past, past_len):
        """ids: [batch, n] int64; returns logits [batch, n, vocab] and the new past."""
        b, n = ids.shape
        feed = {"input_ids": ids, "attention_mask": np.ones((b, past_len + n), dtype=np.int64)}
        if "position_ids" in self.inputs:
            feed["position_ids"] = np.broadcast_to(np.arange(past_len, past_len + n, dtype=np.int64), (b, n)).copy()
        feed.update(past)
        outs = dict(zip(self.out_names, self.sess.run(None, feed)))
        new_past = {n.replace("present.", "past_key_values."): v for n, v in outs.items() if n.startswith("present.")}
        return outs["logits"], new_past

    def greedy(self, prompt_ids, n_new, eos=None):
        past = self.empty_past(1)
        logits, past = self.step(np.array([prompt_ids], dtype=np.int64), past, 0)
        out, pos = [], len(prompt_ids)
        for _ in range(n_new):
            t = int(np.argmax(logits[0, -1]))
            out.append(t)
            if eos is not None and t == eos:
                break
            logits, past = self.step(np.array([[t]], dtype=np.int64), past, pos)
            pos += 1
        return out
