"""microgpt: Andrej Karpathy's microgpt (February 2026), faithfully: same algorithm, same output.
Read it beside his blog post: the sections follow the post; main(), at the end, runs them."""
import math, random
# Dataset: the documents to learn from. Here each line of the input file is one name ("emma").
input_path = "input.txt"  # if it is missing, makemore's list of names is downloaded into it
seed = 42  # one random stream drives it all: the shuffle (in main), the first weights, samples
def load_docs(path):  # the non-blank lines, stripped; a byte-order mark is not part of a name
    with open(path, encoding="utf-8") as f:  # text mode: lines may also end in \r\n or \r
        return [d.strip() for d in f.read().removeprefix("\ufeff").split("\n") if d.strip()]

# Tokenizer: each character in the dataset is a token, plus one more: BOS, beginning of sequence.
def vocabulary(docs): return sorted(set("".join(docs)))  # uchars; char id: index; BOS: len(uchars)

# Autograd: a Value is a number that remembers how it was computed, so the chain rule can run back.
class Value:
    __slots__ = ("data", "grad", "_children", "_local_grads")  # less memory, faster
    def __init__(self, data, children=(), local_grads=()):
        self.data = data                 # the number itself, set by the forward pass
        self.grad = 0                    # d loss / d this number, set by backward()
        self._children = children        # the Values this one was computed from
        self._local_grads = local_grads  # d this / d each child, computed now, in the forward pass
    def __add__(self, other):  # a plain number is a constant: no node for it, no gradient to it
        if not isinstance(other, Value): return Value(self.data + other, (self,), (1,))
        return Value(self.data + other.data, (self, other), (1, 1))
    def __mul__(self, other):
        if not isinstance(other, Value): return Value(self.data * other, (self,), (other,))
        return Value(self.data * other.data, (self, other), (other.data, self.data))
    def __pow__(self, k): return Value(self.data ** k, (self,), (k * self.data ** (k - 1),))
    def log(self): return Value(math.log(self.data), (self,), (1 / self.data,))
    def exp(self): return Value(e := math.exp(self.data), (self,), (e,))  # its own derivative
    def relu(self): return Value(max(0, self.data), (self,), (float(self.data > 0),))
    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1
    def backward(self):
        # micrograd's build_topo (children first), with a stack: no recursion depth limit
        topo, visited, stack = [], set(), [(self, False)]
        while stack:
            v, children_done = stack.pop()
            if children_done:
                topo.append(v)
            elif v not in visited:
                visited.add(v)
                stack.append((v, True))  # come back to v once its children are in topo
                for child in reversed(v._children):  # first child on top: recursion's order
                    if child._children and child not in visited:  # leaves: nothing to pass on
                        stack.append((child, False))
        # The chain rule from the loss back: a node's turn comes after every node that uses it
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad

# Parameters: the model's knowledge, random at first; these settings decide how much there is.
n_layer = 1      # transformer blocks, one after the other
n_embd = 16      # how many numbers stand for a token at a position: the model's width
n_head = 4       # attention heads; each uses its own n_embd // n_head slice of q, k and v
block_size = 16  # longest input: BOS + input.txt's longest name (15); the last BOS is a target
def init_params(vocab_size):  # state_dict: every weight matrix by name, as a list of rows
    matrix = lambda n_out, n_in: [[Value(random.gauss(0, 0.08)) for _ in range(n_in)]
                                  for _ in range(n_out)]  # small: all tokens start about equal
    state_dict = {"wte": matrix(vocab_size, n_embd),      # one row per token
                  "wpe": matrix(block_size, n_embd),      # one row per position
                  "lm_head": matrix(vocab_size, n_embd)}  # from n_embd back to one per token
    for li in range(n_layer):
        state_dict[f"layer{li}.attn_wq"] = matrix(n_embd, n_embd)
        state_dict[f"layer{li}.attn_wk"] = matrix(n_embd, n_embd)
        state_dict[f"layer{li}.attn_wv"] = matrix(n_embd, n_embd)
        state_dict[f"layer{li}.attn_wo"] = matrix(n_embd, n_embd)
        state_dict[f"layer{li}.mlp_fc1"] = matrix(4 * n_embd, n_embd)
        state_dict[f"layer{li}.mlp_fc2"] = matrix(n_embd, 4 * n_embd)
    return state_dict
def parameters(state_dict): return [p for mat in state_dict.values() for row in mat for p in row]

# Model: GPT-2 (but RMSNorm, no biases, ReLU): a token and its position in, logits (scores) out.
# sum() of n products makes 2n nodes; dot and vsum make one, much faster, and change no bit: the
# same additions in the same order, and the '+' nodes they skip only pass gradients on, times 1.
def dot(a, b):  # sum(ai * bi for ai, bi in zip(a, b)), as one node
    data, children, local_grads = 0, [], []
    for ai, bi in zip(a, b):
        data += ai.data * bi.data
        children.append(ai)
        children.append(bi)
        local_grads.append(bi.data)
        local_grads.append(ai.data)
    return Value(data, children, local_grads)
def vsum(terms):  # sum(terms), as one node
    data = 0
    for t in terms:  # not sum() of the floats: Python 3.12+ rounds that more carefully
        data += t.data
    return Value(data, terms, [1] * len(terms))
def linear(x, w):  # [n_in] -> [n_out]: one dot product per row of w
    return [dot(w_row, x) for w_row in w]
def softmax(logits):  # scores -> probabilities: positive, adding up to 1
    # Minus the max: e^-max cancels in the division, and every exp is <= 1, so none can overflow
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = vsum(exps)
    return [e / total for e in exps]
def rmsnorm(x):  # rescale x so that the mean of its squares is 1
    ms = dot(x, x) / len(x)
    scale = (ms + 1e-5) ** -0.5  # the 1e-5 keeps an all-zero x from dividing by 0
    return [xi * scale for xi in x]
def gpt(token_id, pos_id, keys, values, state_dict):  # keys, values: the KV cache, per layer
    head_dim = n_embd // n_head
    tok_emb = state_dict["wte"][token_id]  # what the token is
    pos_emb = state_dict["wpe"][pos_id]    # where it is
    x = [t + p for t, p in zip(tok_emb, pos_emb)]
    x = rmsnorm(x)  # not redundant: the residual path carries this x, un-normed, on to the logits
    for li in range(n_layer):
        # 1) Attention: mix in this and earlier positions (the cache holds no later ones: causal)
        x_residual = x
        x = rmsnorm(x)
        q = linear(x, state_dict[f"layer{li}.attn_wq"])  # what this position looks for
        k = linear(x, state_dict[f"layer{li}.attn_wk"])  # what it can be found by
        v = linear(x, state_dict[f"layer{li}.attn_wv"])  # what it hands over when found
        keys[li].append(k)  # kept as Values: later positions' losses flow back into this k, v
        values[li].append(v)
        x_attn = []
        for h in range(n_head):  # each head attends with its own slice of q, k and v
            hs = h * head_dim
            q_h = q[hs:hs + head_dim]
            k_h = [k_t[hs:hs + head_dim] for k_t in keys[li]]  # [positions so far][head_dim]
            v_h = [v_t[hs:hs + head_dim] for v_t in values[li]]
            # head_dim random-sign terms sum to ~sqrt(head_dim): undo that, or softmax saturates
            attn_logits = [dot(q_h, k_h_t) / head_dim ** 0.5 for k_h_t in k_h]
            attn_weights = softmax(attn_logits)  # how much to take from each position
            head_out = [dot(attn_weights, [v_h_t[j] for v_h_t in v_h]) for j in range(head_dim)]
            x_attn.extend(head_out)  # head_out: the v's, averaged with attn_weights
        x = linear(x_attn, state_dict[f"layer{li}.attn_wo"])  # mix the heads back together
        x = [a + b for a, b in zip(x, x_residual)]  # residual: the block adds to x, not replaces
        # 2) MLP: each position on its own, widened 4x, through ReLU, and narrowed back
        x_residual = x
        x = rmsnorm(x)
        x = linear(x, state_dict[f"layer{li}.mlp_fc1"])
        x = [xi.relu() for xi in x]
        x = linear(x, state_dict[f"layer{li}.mlp_fc2"])
        x = [a + b for a, b in zip(x, x_residual)]
    return linear(x, state_dict["lm_head"])  # the logits: [n_embd] -> [vocab_size]

# Training: at each step, nudge every parameter a little, so that one name becomes likelier.
num_steps = 1000       # training steps, one document each
learning_rate = 0.01   # Adam's step size at the first step; it falls linearly toward 0
beta1, beta2, eps_adam = 0.85, 0.99, 1e-8  # share of old m, v kept each step; eps avoids / 0
def train(docs, uchars, state_dict):
    params, BOS = parameters(state_dict), len(uchars)
    m = [0.0] * len(params)  # first moment: a running mean of each parameter's gradient
    v = [0.0] * len(params)  # second moment: a running mean of its square
    for step in range(num_steps):
        # Take one document and tokenize it, with BOS on both sides: predicting from the first
        # BOS teaches how names begin, and predicting the last one teaches where they end
        doc = docs[step % len(docs)]
        tokens = [BOS] + [uchars.index(ch) for ch in doc] + [BOS]
        n = min(block_size, len(tokens) - 1)  # positions to predict; a longer name is cut

        # Forward: predict every next token, with a fresh KV cache, building the graph to the loss
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        losses = []
        for pos_id in range(n):
            token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
            logits = gpt(token_id, pos_id, keys, values, state_dict)
            probs = softmax(logits)
            loss_t = -probs[target_id].log()  # 0 when the model was sure of the right token
            losses.append(loss_t)
        loss = (1 / n) * vsum(losses)  # the mean: long names weigh no more than short ones
        if not math.isfinite(loss.data): raise FloatingPointError(f"the loss is {loss.data}")

        loss.backward()  # Backward: the gradient of the loss with respect to every parameter
        # Adam: step each parameter by its gradient's running mean over its typical size (sqrt v),
        # so each moves ~lr_t. m, v start at 0, too small early: / (1 - beta**(step + 1)) undoes it
        lr_t = learning_rate * (1 - step / num_steps)
        for i, p in enumerate(params):
            m[i] = beta1 * m[i] + (1 - beta1) * p.grad
            v[i] = beta2 * v[i] + (1 - beta2) * p.grad ** 2
            m_hat = m[i] / (1 - beta1 ** (step + 1))
            v_hat = v[i] / (1 - beta2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat ** 0.5 + eps_adam)
            p.grad = 0  # backward adds (+=) into grad: clear it for the next step
        print(f"step {step + 1:4d} / {num_steps:4d} | loss {loss.data:.4f}", end="\r")

# Inference: the trained model makes up new names, one token at a time, until it says BOS.
temperature = 0.5  # divides logits: 0.5 squares each odds ratio (safer), > 1 flattens them
num_samples = 20   # how many names to make up
def inference(uchars, state_dict, prompt=""):
    BOS = len(uchars)  # the last token id: vocab_size is BOS + 1
    for sample_idx in range(num_samples):
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        tokens = [BOS] + [uchars.index(ch) for ch in prompt]  # a prompt is given, not drawn
        for pos_id in range(block_size):
            logits = gpt(tokens[pos_id], pos_id, keys, values, state_dict)
            if pos_id + 1 < len(tokens): continue  # a prompt token: run only to fill the KV cache
            probs = softmax([logit / temperature for logit in logits])
            if not math.isfinite(sum(p.data for p in probs)): raise ValueError("NaN probabilities")
            token_id = random.choices(range(BOS + 1), weights=[p.data for p in probs])[0]
            if token_id == BOS:
                break
            tokens.append(token_id)
        print(f"sample {sample_idx + 1:2d}: {''.join(uchars[t] for t in tokens[1:])}")

# Plumbing: the command line, saving and loading models, the download, one line for each error.
import argparse, gc, json, os, sys, traceback  # noqa: E402 (the algorithm: math, random only)
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt"
FLAGS = [  # flag, the setting it overrides (default: its value above), values allowed, meaning
    ("--input", "input_path", "", "training text, one document per line"),
    ("--n-layer", "n_layer", "> 0", "number of transformer layers"),
    ("--n-embd", "n_embd", "> 0", "width of the embeddings"),
    ("--n-head", "n_head", "> 0", "attention heads; must divide --n-embd"),
    ("--block-size", "block_size", "> 0", "longest context; longer documents are cut"),
    ("--num-steps", "num_steps", ">= 0", "training steps, one document each"),
    ("--learning-rate", "learning_rate", ">= 0", "Adam's learning rate, decayed to 0"),
    ("--save", "save_path", "", "after training, save the model to this JSON file"),
    ("--seed", "seed", "", "random seed"),
    ("--temperature", "temperature", "> 0", "sampling temperature; lower: safer"),
    ("--num-samples", "num_samples", ">= 0", "names to sample after training"),
    ("--prompt", "prompt", "", "text that every sample starts with"),
    ("--load", "load_path", "", "sample from a model saved with --save, without training")]
DEFAULTS = {name: globals().get(name) for _, name, _, _ in FLAGS}  # the values set above, or None
def parse_args(argv=None, error=None):  # {setting: value} for the flags given, checked
    p = argparse.ArgumentParser("microgpt", argument_default=argparse.SUPPRESS)  # given flags only
    p.error = error or p.error  # a saved model's settings are checked here too, with their error
    for flag, name, _, meaning in FLAGS:
        default = "" if DEFAULTS[name] is None else f" (default: {DEFAULTS[name]})"
        p.add_argument(flag, dest=name, type=type(DEFAULTS[name] or ""), help=meaning + default)
    given = vars(p.parse_args(argv))
    for flag, name, rule, _ in FLAGS:  # numbers: finite, and above 0 (or at least 0)
        x = given.get(name, 1)
        if rule and not (math.isfinite(x) and (x > 0 or x == 0 and rule == ">= 0")):
            p.error(f"{flag} must be a finite number {rule}, not {x}")
    n_embd, n_head = (given.get(name, DEFAULTS[name]) for name in ("n_embd", "n_head"))
    return p.error(f"--n-embd ({n_embd}) must be divisible by --n-head ({n_head})") \
        if n_embd % n_head else given
def fail(message, code=1):  # one line on stderr: a reason, not a traceback
    print(f"microgpt: {message}", file=sys.stderr)
    sys.exit(code)
def read_docs(path):  # load_docs, after downloading the default input.txt if it is missing
    if path == "input.txt" and not os.path.exists(path):
        import urllib.request  # only here: most runs never need it, and it costs ~7 MB
        print(f"microgpt: {path} not found, downloading {NAMES_URL}", file=sys.stderr)
        try:
            with urllib.request.urlopen(NAMES_URL, timeout=30) as response:
                write_file(path, response.read())
        except Exception as e:  # refused, 404, cut off midway, ...
            fail(f"cannot download {NAMES_URL} to {path} ({getattr(e, 'reason', e)}): use --input")
    return load_docs(path) or fail(f"{path} has no documents: it is empty or has only blank lines")
def write_file(path, data):  # all or nothing: into a .part file, renamed once it is complete
    try:
        with open(path + ".part", "wb") as f: f.write(data)
        os.replace(path + ".part", path)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror.lower()}")
    finally:
        if os.path.exists(path + ".part"): os.remove(path + ".part")  # failed or interrupted
def save_model(path, uchars, state_dict):  # JSON, for people too; repr'd floats come back exact
    saved = [f"{flag}={globals()[name]}" for flag, name, _, _ in FLAGS[1:5] + FLAGS[9:11]]
    model = {"microgpt": 1, "settings": saved, "uchars": "".join(uchars),  # 1: format version
             "state_dict": {k: [[p.data for p in r] for r in m] for k, m in state_dict.items()},
             "random_state": random.getstate()}  # where the samples start
    write_file(path, json.dumps(model, indent=1, allow_nan=False).encode())
def load_model(path, given):  # (uchars, state_dict) as saved, or an error saying what is wrong
    with open(path, encoding="utf-8") as f:
        model = json.load(f)  # not JSON, or cut off: a ValueError that says where
    version = model.get("microgpt") if isinstance(model, dict) else None  # the format's version
    if version != 1:
        raise ValueError(f"format version {version}, not 1" if version else "not a microgpt model")
    saved = parse_args(model["settings"], lambda why: fail(f"cannot read {path}: {why}"))
    globals().update(saved, **given)  # --seed, --temperature, --num-samples: what was asked for
    uchars, saved = list(model["uchars"]), model["state_dict"]
    state_dict = init_params(len(uchars) + 1)  # the shapes; the numbers come from the file
    for name, mat in state_dict.items():  # finite floats, in the rows and columns set above
        if [[type(x) is float and math.isfinite(x) for x in row] for row in saved[name]] != \
                [[True] * len(row) for row in mat]:
            raise ValueError(f"state_dict.{name} is not {len(mat)} x {len(mat[0])} finite numbers")
    for p, x in zip(parameters(state_dict), [x for k in state_dict for r in saved[k] for x in r]):
        p.data = x
    version, state, gauss = model["random_state"]
    random.setstate((version, tuple(state), gauss)) if "seed" not in given else random.seed(seed)
    return uchars, state_dict
def explain(e):  # (one line on what went wrong and where, the exit code)
    frames = {f.f_code.co_name: f.f_locals for f, _ in traceback.walk_tb(e.__traceback__)}
    step = frames.get("train", {}).get("step")  # read off the traceback
    where = ("during sampling" if "inference" in frames else "while saving" if "save_model" in
             frames else "while loading" if step is None else f"at step {step + 1}")
    if isinstance(e, KeyboardInterrupt): return f"interrupted {where}", 130
    if isinstance(e, OSError): return f"cannot read {e.filename}: {e.strerror.lower()}", 1
    if isinstance(e, UnicodeEncodeError):  # a ValueError, but about the terminal, not numbers
        return f"{e.encoding} output cannot show {e.object[e.start]!r}: PYTHONIOENCODING=utf-8", 1
    if where == "while loading":  # the input text, or a model file not as --save wrote it
        why = (f"not valid UTF-8 at byte {e.start}" if isinstance(e, UnicodeDecodeError) else
               f"no {e}" if isinstance(e, KeyError) else e)
        return f"cannot read {load_path or input_path}: {why}", 1
    logits = frames.get("inference", {}).get("logits", [])  # what sampling was dividing by T
    cold = "sampling" in where and all(math.isfinite(logit.data) for logit in logits)
    fix = "larger --temperature" if cold else "smaller --learning-rate"  # too cold, or blown up
    return f"numbers out of range {where} ({e.args[-1]}): try a {fix}", 1
def main(argv=None):
    given = parse_args(argv)
    globals().update(DEFAULTS, **given)  # the flags override the settings above
    for flag in [flag for flag, name, _, _ in FLAGS[:8] if name in given and load_path]:
        fail(f"{flag} cannot go with --load: the file fixes the shape, and no training runs", 2)
    if sys.implementation.name == "cpython":  # reference counts free the graph (it has no cycles),
        gc.disable()  # so the cycle collector only costs time; PyPy's collector frees everything
    try:
        if load_path:
            uchars, state_dict = load_model(load_path, given)
        else:
            random.seed(seed)
            docs = read_docs(input_path)
            random.shuffle(docs)
            print(f"num docs: {len(docs)}")
            uchars = vocabulary(docs)
            print(f"vocab size: {len(uchars) + 1}")
        for ch in [ch for ch in prompt or "" if ch not in uchars][:1]:
            fail(f"--prompt: {ch!r} is not in the vocabulary: {''.join(uchars)!r}", 2)
        if not load_path:
            state_dict = init_params(len(uchars) + 1)
            print(f"num params: {len(parameters(state_dict))}")
            train(docs, uchars, state_dict)
            if save_path: save_model(save_path, uchars, state_dict)
        print("\n--- inference (new, hallucinated names) ---")  # (the step lines end in \r)
        inference(uchars, state_dict, prompt or "")
        sys.stdout.flush()  # inside the try: a closed pipe shows up here at the latest
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop at once, quietly
        os._exit(141)
    except (KeyboardInterrupt, OSError, ArithmeticError, LookupError, TypeError, ValueError) as e:
        fail(*explain(e))
if __name__ == "__main__": main()
