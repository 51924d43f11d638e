"""microgpt: train a tiny GPT on a list of names and sample new ones, in pure Python.
A faithful reimplementation of Andrej Karpathy's microgpt (February 2026): same algorithm, same
bytes printed for the same input, seed and settings. Read it top to bottom, in run order."""
import argparse
import math
import os
import random
import sys

# Dataset: one document per non-blank line of a UTF-8 text file.
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt"

def fail(message, code=1):  # one line on stderr: the user gets a reason, not a traceback
    print(f"microgpt: {message}", file=sys.stderr)
    sys.exit(code)

def download(url, path):  # the file gets its name only once it is complete
    import http.client, urllib.request  # not at the top: big (~7 MB), most runs never need them
    print(f"microgpt: {path} not found, downloading {url}", file=sys.stderr)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as f:
            f.write(response.read())
        os.replace(tmp, path)
    except (OSError, http.client.HTTPException) as e:  # refused, 404, cut off midway, ...
        fail(f"cannot download {url} ({getattr(e, 'reason', e)}): "
             f"pass --input FILE, or put an input.txt here")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

def load_docs(path):  # every line of the file, stripped of surrounding whitespace, if not blank
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        fail(f"cannot read {path}: no such file")
    except OSError as e:  # a directory, no permission, ...
        fail(f"cannot read {path}: {(e.strerror or str(e)).lower()}")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is not text
    except UnicodeDecodeError as e:
        fail(f"cannot read {path}: not valid UTF-8 at byte {e.start}")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # as open() splits lines
    docs = [line.strip() for line in lines if line.strip()]
    if not docs:
        fail(f"{path} has no documents: it is empty or has only blank lines")
    return docs

# Tokenizer: each distinct character is a token; one extra token, BOS, marks a name's edges.
def tokenizer(docs):
    chars = sorted(set("".join(docs)))
    return chars, len(chars)  # token k is chars[k]; BOS is the next number

def encode(doc, chars, bos):
    return [bos] + [chars.index(ch) for ch in doc] + [bos]

# Autograd: a scalar that records its inputs and the local derivative w.r.t. each of them.
class Value:
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data, self.grad = data, 0
        self._children, self._local_grads = children, local_grads  # for the chain rule

    def __add__(self, other):
        if isinstance(other, Value):
            return Value(self.data + other.data, (self, other), (1, 1))
        return Value(self.data + other, (self,), (1,))  # a plain number is a constant, no node

    def __mul__(self, other):
        if isinstance(other, Value):
            return Value(self.data * other.data, (self, other), (other.data, self.data))
        return Value(self.data * other, (self,), (other,))

    def __pow__(self, k): return Value(self.data ** k, (self,), (k * self.data ** (k - 1),))
    def log(self): return Value(math.log(self.data), (self,), (1 / self.data,))
    def relu(self): return Value(max(0, self.data), (self,), (float(self.data > 0),))

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,))  # exp is its own derivative

    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1

    def backward(self):
        # Order the graph so that every node comes after its children: a depth-first post-order,
        # walked with a stack instead of recursion so that a graph of any depth works.
        topo, visited, stack = [], {self}, [(self, iter(self._children))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if child._children and child not in visited:  # leaves pass nothing on: skip them
                    visited.add(child)
                    stack.append((child, iter(child._children)))
                    break
            else:
                stack.pop()
                topo.append(node)
        # Chain rule from the loss back: a node's grad is complete before it is passed on.
        self.grad = 1
        for node in reversed(topo):
            grad = node.grad
            for child, local_grad in zip(node._children, node._local_grads):
                child.grad += local_grad * grad

# Fused nodes, for speed: one node for a whole sum instead of a chain of additions. Same running
# sum from 0, children in the chain's visiting order; and no later term here reuses an earlier
# term's input, so backward adds the same numbers in the same order (tests/test_model.py).
def vsum(terms):
    data = 0
    for t in terms:
        data += t.data
    return Value(data, tuple(terms), (1,) * len(terms))

def dot(a, b):  # sum(a[i] * b[i]): d/da[i] = b[i], d/db[i] = a[i]
    data = 0
    children, local_grads = [], []
    for x, y in zip(a, b):
        data += x.data * y.data
        children.append(x)
        children.append(y)
        local_grads.append(y.data)
        local_grads.append(x.data)
    return Value(data, children, local_grads)

# Parameters: every weight drawn from N(0, 0.08), matrix by matrix, row by row.
def init_params(vocab_size, cfg):
    def matrix(n_out, n_in):
        return [[Value(random.gauss(0, 0.08)) for _ in range(n_in)] for _ in range(n_out)]
    e = cfg.n_embd
    state = {"wte": matrix(vocab_size, e), "wpe": matrix(cfg.block_size, e),
             "lm_head": matrix(vocab_size, e)}
    for i in range(cfg.n_layer):
        for name, shape in [("attn_wq", (e, e)), ("attn_wk", (e, e)), ("attn_wv", (e, e)),
                            ("attn_wo", (e, e)), ("mlp_fc1", (4 * e, e)), ("mlp_fc2", (e, 4 * e))]:
            state[f"layer{i}.{name}"] = matrix(*shape)
    return state

def all_params(state): return [p for mat in state.values() for row in mat for p in row]

# Model: the building blocks, then the GPT itself, one position at a time.
def linear(x, w):  # [n_in] -> [n_out], no bias
    return [dot(row, x) for row in w]

def softmax(logits):
    m = max(v.data for v in logits)  # a plain number: shifting by it avoids overflow in exp
    exps = [(v - m).exp() for v in logits]
    total = vsum(exps)  # one node: every probability divides by the same sum
    return [e / total for e in exps]

def rmsnorm(x):
    ms = dot(x, x) / len(x)
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]

def gpt(token, pos, keys, values, state, cfg):
    """Logits for the token after `token` at `pos`; keys/values cache the earlier positions."""
    head_dim = cfg.n_embd // cfg.n_head
    x = [t + p for t, p in zip(state["wte"][token], state["wpe"][pos])]
    x = rmsnorm(x)  # not redundant: the residual stream starts from a normalized vector
    for i in range(cfg.n_layer):
        # Attention: each head mixes the values of all positions so far, weighted by q . k
        r = x
        x = rmsnorm(x)
        q = linear(x, state[f"layer{i}.attn_wq"])
        keys[i].append(linear(x, state[f"layer{i}.attn_wk"]))
        values[i].append(linear(x, state[f"layer{i}.attn_wv"]))
        heads = []
        for h in range(cfg.n_head):
            hs = slice(h * head_dim, (h + 1) * head_dim)
            scores = [dot(q[hs], k[hs]) / head_dim ** 0.5 for k in keys[i]]
            weights = softmax(scores)  # [positions so far]
            heads += [dot(weights, [v[j] for v in values[i]]) for j in range(hs.start, hs.stop)]
        x = linear(heads, state[f"layer{i}.attn_wo"])
        x = [a + b for a, b in zip(x, r)]
        # MLP: widen 4x, relu, narrow back
        r = x
        x = rmsnorm(x)
        x = [xi.relu() for xi in linear(x, state[f"layer{i}.mlp_fc1"])]
        x = linear(x, state[f"layer{i}.mlp_fc2"])
        x = [a + b for a, b in zip(x, r)]
    return linear(x, state["lm_head"])  # [n_embd] -> [vocab_size]

# Training: the mean cross-entropy of one document, its gradient, then one Adam update.
def doc_loss(tokens, state, cfg):
    n = min(cfg.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(cfg.n_layer)], [[] for _ in range(cfg.n_layer)]
    losses = []
    for pos in range(n):
        probs = softmax(gpt(tokens[pos], pos, keys, values, state, cfg))
        losses.append(-probs[tokens[pos + 1]].log())
    return (1 / n) * vsum(losses)

def adam_update(params, m, v, step, cfg, beta1=0.85, beta2=0.99, eps=1e-8):
    lr_t = cfg.learning_rate * (1 - step / cfg.num_steps)  # decays linearly to 0
    bias1, bias2 = 1 - beta1 ** (step + 1), 1 - beta2 ** (step + 1)  # the same for every p
    for i, p in enumerate(params):
        m[i] = beta1 * m[i] + (1 - beta1) * p.grad
        v[i] = beta2 * v[i] + (1 - beta2) * p.grad ** 2
        m_hat = m[i] / bias1
        v_hat = v[i] / bias2
        p.data -= lr_t * m_hat / (v_hat ** 0.5 + eps)
        p.grad = 0

def train_step(tokens, step, state, params, m, v, cfg):
    loss = doc_loss(tokens, state, cfg)
    loss.backward()
    adam_update(params, m, v, step, cfg)
    return loss.data

# Sampling: start from BOS and draw one token at a time until BOS comes back.
def sample(state, cfg, chars, bos):
    keys, values = [[] for _ in range(cfg.n_layer)], [[] for _ in range(cfg.n_layer)]
    token, text = bos, []
    for pos in range(cfg.block_size):
        logits = gpt(token, pos, keys, values, state, cfg)
        probs = softmax([logit / cfg.temperature for logit in logits])  # < 1: more confident
        token = random.choices(range(bos + 1), weights=[p.data for p in probs])[0]
        if token == bos:
            break
        text.append(chars[token])
    return "".join(text)

# Command line: one flag per setting; the defaults are the reference's.
def number(kind, low, op=">="):  # a parser for numbers that are finite and op low
    def parse(text):
        x = kind(text)  # a ValueError becomes argparse's "invalid int value: 'x'"
        if not (math.isfinite(x) and (x > low or (x == low and op == ">="))):
            raise argparse.ArgumentTypeError(f"must be a finite number {op} {low}, not {text}")
        return x
    parse.__name__ = kind.__name__
    return parse

def parse_args(argv=None):
    p = argparse.ArgumentParser("microgpt", description="Train a tiny GPT, then sample from it.")
    for flag, parse, default, meaning in [
            ("--input", str, "input.txt", "training text, one document per line; input.txt is "
             "downloaded if missing"),
            ("--seed", int, 42, "random seed"),
            ("--n-layer", number(int, 1), 1, "number of transformer layers"),
            ("--n-embd", number(int, 1), 16, "width of the embeddings"),
            ("--n-head", number(int, 1), 4, "attention heads; must divide --n-embd"),
            ("--block-size", number(int, 1), 16, "longest context; longer documents are cut"),
            ("--num-steps", number(int, 0), 1000, "training steps, one document each"),
            ("--learning-rate", number(float, 0), 0.01, "Adam's learning rate, decayed to 0"),
            ("--temperature", number(float, 0, ">"), 0.5, "sampling temperature; lower: safer"),
            ("--num-samples", number(int, 0), 20, "names to sample after training")]:
        p.add_argument(flag, type=parse, default=default, help=f"{meaning} (default: {default})")
    cfg = p.parse_args(argv)
    if cfg.n_embd % cfg.n_head:
        p.error(f"--n-embd ({cfg.n_embd}) must be divisible by --n-head ({cfg.n_head})")
    return cfg

# Main: the whole run, in the order of the sections above.
def main(argv=None):
    cfg = parse_args(argv)
    where = "while loading"
    try:
        random.seed(cfg.seed)
        if cfg.input == "input.txt" and not os.path.exists(cfg.input):
            download(NAMES_URL, cfg.input)  # the default input: makemore's names, as the reference
        docs = load_docs(cfg.input)
        random.shuffle(docs)
        print(f"num docs: {len(docs)}")
        chars, bos = tokenizer(docs)
        print(f"vocab size: {bos + 1}")
        state = init_params(bos + 1, cfg)
        params = all_params(state)
        print(f"num params: {len(params)}")
        m, v = [0.0] * len(params), [0.0] * len(params)
        for step in range(cfg.num_steps):
            where = f"at step {step + 1}"
            tokens = encode(docs[step % len(docs)], chars, bos)
            loss = train_step(tokens, step, state, params, m, v, cfg)
            print(f"step {step + 1:4d} / {cfg.num_steps:4d} | loss {loss:.4f}", end="\r")
        where = "during sampling"
        print("\n--- inference (new, hallucinated names) ---")
        for i in range(cfg.num_samples):
            print(f"sample {i + 1:2d}: {sample(state, cfg, chars, bos)}")
        sys.stdout.flush()
    except KeyboardInterrupt:
        fail(f"interrupted {where}", 130)
    except UnicodeEncodeError as e:  # a ValueError too, but not about the numbers
        fail(f"{e.encoding} output cannot show {e.object[e.start]!r}: set PYTHONIOENCODING=utf-8")
    except (ValueError, OverflowError) as e:  # e.g. log(0): a too large step blew the numbers up
        fix = "larger --temperature" if where == "during sampling" else "smaller --learning-rate"
        fail(f"numbers out of range {where} ({e.args[-1]}): try a {fix}")
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)

if __name__ == "__main__":
    main()
