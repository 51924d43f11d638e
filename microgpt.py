"""microgpt: the GPT of Andrej Karpathy's blog post "microgpt" (February 2026), in one file of
pure Python. It trains on a list of names, then makes up new ones. It is the same algorithm as
the post's program, and for the same input and seed it gives the same output, to the last bit.

Read it beside the post. The sections below follow the post's listings, in the same order and
with the same names; where this file adds something, a comment says "Not in the post". After
them come an Efficiency section and the plumbing (the command line, saving, loading, errors).

Run it with: python microgpt.py. A normal run uses the Efficiency section's faster versions of a
few functions, which compute the very same numbers; python microgpt.py --plain runs exactly the
code you read here, about 17 times slower."""
import math    # log, exp, and isfinite (False for inf and for nan, "not a number")
import os      # os.path.exists, to see whether input.txt is there yet
import random  # the random numbers: seed, shuffle, gauss (first weights), choices (sampling)

# How it runs: the post's program runs its listings from top to bottom. Here each listing below
# is a function, so that importing this file runs nothing, and the functions pass on what the
# post keeps in global names. In the post's order, the program is:
#     random.seed(seed)
#     docs = load_docs(input_path)
#     uchars, BOS, vocab_size = tokenizer(docs)
#     state_dict, params = init_params(vocab_size)
#     train(docs, uchars, BOS, state_dict, params, [])
#     inference(uchars, BOS, vocab_size, state_dict, [])
# run(), in the plumbing at the end, does exactly this, with the settings of the flags, through
# small wrappers (read_input, run_training, run_sampling) that report anything that goes wrong.

# Dataset: the documents to learn from, one per line of a text file. The default, input.txt,
# holds 32,033 names.
input_path = "input.txt"  # the file to learn from (the flag --input changes it)
seed = 42  # the seed of the random numbers, which decide the shuffle, first weights and samples


def load_docs(path):
    # The post downloads its list of names when input.txt is missing; so does this file (the
    # download itself is in the plumbing). Not in the post: a missing file of another name is
    # an error instead.
    if path == "input.txt" and not os.path.exists(path):
        download_names(path)
    # Not in the post: some editors start a file with a byte order mark (BOM). Reading with
    # utf-8-sig drops it, so that it does not stick to the first name.
    with open(path, encoding="utf-8-sig") as f:
        docs = [line.strip() for line in f if line.strip()]  # the non-blank lines, trimmed
    random.shuffle(docs)
    print(f"num docs: {len(docs)}")
    return docs


# Tokenizer: each character gets a number, its token id: its index in uchars. One more token,
# BOS, marks where a document begins and ends. uchars[token_id] turns an id back into a letter.
def tokenizer(docs):
    uchars = sorted(set("".join(docs)))  # every character that occurs, once, in sorted order
    BOS = len(uchars)  # the Beginning Of Sequence token gets the next free id
    vocab_size = len(uchars) + 1  # how many tokens there are: the characters, and BOS
    print(f"vocab size: {vocab_size}")
    return uchars, BOS, vocab_size


# Autograd: a Value is a number that remembers how it was computed. Each Value is a node in a
# graph, linked to the Values it was computed from, so that backward() can apply the chain rule
# from the loss back to every number the loss depends on.
class Value:
    __slots__ = ("data", "grad", "_children", "_local_grads")  # only these fields: less memory

    def __init__(self, data, children=(), local_grads=()):
        self.data = data                 # the number itself, computed in the forward pass
        self.grad = 0                    # d loss / d this number, computed by backward()
        self._children = children        # the Values this one was computed from
        self._local_grads = local_grads  # d this / d each child, known already in the forward pass

    def __add__(self, other):
        # A plain number is wrapped in a Value with no children: a constant
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        # d(a*b)/da is b, and d(a*b)/db is a
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    # Four more operations, each with its derivative: a**k for a plain number k, log, exp, and
    # relu, whose slope is 1.0 where a > 0 and 0.0 elsewhere.
    def __pow__(self, k): return Value(self.data**k, (self,), (k * self.data**(k - 1),))
    def log(self): return Value(math.log(self.data), (self,), (1 / self.data,))
    def exp(self): return Value(math.exp(self.data), (self,), (math.exp(self.data),))
    def relu(self): return Value(max(0, self.data), (self,), (float(self.data > 0),))
    # The rest are built from those. -a is a * -1, a - b is a + (-b), and a / b is a * b**-1.
    # Python calls the r-versions when a plain number comes first, as in 0 + a, which is how
    # sum() starts.
    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other**-1
    def __rtruediv__(self, other): return other * self**-1

    def backward(self):
        # Order the graph so that each node comes after all the nodes it was computed from
        topo = []
        visited = set()

        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build_topo(child)
                topo.append(v)
        build_topo(self)

        # The chain rule, from the loss back. In topo, each node comes after its children; in
        # reverse, each node comes after all the nodes that use it, so v.grad is complete by
        # v's turn. v then adds local_grad * v.grad to each child.grad: a child used by several
        # nodes collects a contribution from each, hence +=.
        self.grad = 1  # d loss / d loss
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


# Parameters: the knowledge of the model. They start random and are learned in training. These
# settings decide how many there are.
n_layer = 1      # how many transformer blocks, one after the other: the depth
n_embd = 16      # how many numbers stand for a token at a position: the width
block_size = 16  # the longest context: BOS, then up to 15 letters (the longest name has 15)
n_head = 4       # attention heads; each works on its own n_embd // n_head slice of q, k and v


def matrix(nout, nin, std=0.08):
    # nout rows of nin small random numbers (std 0.08 is the post's choice): at first, every
    # next token gets about the same chance
    return [[Value(random.gauss(0, std)) for _ in range(nin)] for _ in range(nout)]


def init_params(vocab_size):
    state_dict = {"wte": matrix(vocab_size, n_embd),      # token embeddings: a row per token
                  "wpe": matrix(block_size, n_embd),      # position embeddings: a row per position
                  "lm_head": matrix(vocab_size, n_embd)}  # from n_embd numbers, a score per token
    for i in range(n_layer):
        state_dict[f"layer{i}.attn_wq"] = matrix(n_embd, n_embd)
        state_dict[f"layer{i}.attn_wk"] = matrix(n_embd, n_embd)
        state_dict[f"layer{i}.attn_wv"] = matrix(n_embd, n_embd)
        state_dict[f"layer{i}.attn_wo"] = matrix(n_embd, n_embd)
        state_dict[f"layer{i}.mlp_fc1"] = matrix(4 * n_embd, n_embd)
        state_dict[f"layer{i}.mlp_fc2"] = matrix(n_embd, 4 * n_embd)
    # All the parameters in one flat list, for the optimizer: matrix by matrix, row by row
    params = [p for mat in state_dict.values() for row in mat for p in row]
    print(f"num params: {len(params)}")
    return state_dict, params


# Architecture: GPT-2, with small differences: RMSNorm without learned gains for LayerNorm (also
# right after the embeddings, and none before lm_head), no biases, and ReLU for GeLU.
# gpt() takes one token and its position, and gives logits: a score for every possible next token.
def linear(x, w):  # [len(x)] -> [len(w)]: for each row of w, the sum of row * x
    return [sum(wi * xi for wi, xi in zip(wo, x)) for wo in w]


def softmax(logits):  # scores -> probabilities: positive, and adding up to 1
    # Subtracting the largest score changes no probability (e^-max cancels in the division),
    # and then no exp is above 1, so none can overflow. As the probabilities do not depend on
    # max_val, it can be a plain number, with no gradient.
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = sum(exps)
    return [e / total for e in exps]


def rmsnorm(x):  # rescale x so that the mean of its squares is 1
    ms = sum(xi * xi for xi in x) / len(x)
    scale = (ms + 1e-5) ** -0.5  # 1 / sqrt(ms); the 1e-5 keeps an all-zero x from dividing by 0
    return [xi * scale for xi in x]


# Not in the post: a name for attention's two sums of products, which the post writes inline.
# (A normal run replaces it with a faster version that gives the same numbers; see below.)
def dot(a, b):  # a[0]*b[0] + a[1]*b[1] + ...
    return sum(ai * bi for ai, bi in zip(a, b))


def gpt(token_id, pos_id, keys, values, state_dict):
    # The KV cache: keys[li] is the list of k vectors of layer li, one for each position so
    # far, and values[li] the list of its v vectors. Training and sampling feed one position at
    # a time, and the cache is how a position sees the ones before it.
    # Not in the post: gpt() takes state_dict as an argument, and computes head_dim itself,
    # because flags (or a loaded model) can change the shape after this file is read.
    head_dim = n_embd // n_head
    tok_emb = state_dict["wte"][token_id]  # what the token is
    pos_emb = state_dict["wpe"][pos_id]    # where it is
    x = [t + p for t, p in zip(tok_emb, pos_emb)]  # both at once: this token, at this place
    # Not redundant, the post notes, though each block norms its input again: a block's rmsnorm
    # applies only to the copy that the block works on, while this x itself is carried on, by
    # the residual connections, to the logits (and its gradient comes back the same way).
    x = rmsnorm(x)

    for li in range(n_layer):
        # 1) Multi-head attention: this position takes in what it needs from itself and the
        # positions before it. The cache holds no later position, and that makes it causal.
        x_residual = x
        x = rmsnorm(x)
        q = linear(x, state_dict[f"layer{li}.attn_wq"])  # what this position looks for
        k = linear(x, state_dict[f"layer{li}.attn_wk"])  # what it can be found by
        v = linear(x, state_dict[f"layer{li}.attn_wv"])  # what it hands over when found
        # The cache holds the Values themselves, so the losses of later positions flow back
        # through it into this k and v.
        keys[li].append(k)
        values[li].append(v)
        x_attn = []
        for h in range(n_head):
            hs = h * head_dim  # where head h's slice starts
            q_h = q[hs:hs + head_dim]
            k_h = [ki[hs:hs + head_dim] for ki in keys[li]]  # [positions so far][head_dim]
            v_h = [vi[hs:hs + head_dim] for vi in values[li]]
            # A sum of head_dim products of random sign grows like sqrt(head_dim). Dividing by
            # sqrt(head_dim) keeps wider heads from making softmax pile onto one position.
            attn_logits = [dot(q_h, k_h[t]) / head_dim**0.5 for t in range(len(k_h))]
            attn_weights = softmax(attn_logits)  # how much to take from each position
            # Element j of the head's output: the average of element j of every position's v,
            # weighted by attn_weights ([vt[j] for vt in v_h] is that column of v_h)
            head_out = [dot(attn_weights, [vt[j] for vt in v_h]) for j in range(head_dim)]
            x_attn.extend(head_out)
        x = linear(x_attn, state_dict[f"layer{li}.attn_wo"])  # the heads, mixed back together
        x = [a + b for a, b in zip(x, x_residual)]  # residual: the block adds to x, not replaces

        # 2) MLP (multilayer perceptron): widen to 4 * n_embd numbers, apply ReLU, narrow back
        x_residual = x
        x = rmsnorm(x)
        x = linear(x, state_dict[f"layer{li}.mlp_fc1"])
        x = [xi.relu() for xi in x]
        x = linear(x, state_dict[f"layer{li}.mlp_fc2"])
        x = [a + b for a, b in zip(x, x_residual)]

    logits = linear(x, state_dict["lm_head"])  # [n_embd] -> [vocab_size]
    return logits


# Training: show the model one document at a time, and nudge every parameter so that the
# document becomes a little more likely. Adam is the optimizer that does the nudging.
num_steps = 1000      # training steps, one document each (so 1,000 of the 32,033 names)
learning_rate = 0.01  # the size of Adam's steps at first; it falls linearly to near 0
beta1 = 0.85          # Adam's running mean of the gradient keeps 85% of itself at each step
beta2 = 0.99          # and its running mean of the gradient squared keeps 99%
eps_adam = 1e-8       # keeps Adam from dividing by 0 when a parameter's gradients were all 0


def train(docs, uchars, BOS, state_dict, params, step_losses):
    # Not in the post: step_losses, a list from the caller, to which each step's loss is added.
    # With it the caller reports the loss trend, and knows how far training got if it stops.
    m = [0.0] * len(params)  # Adam's first moment: a running mean of each parameter's gradient
    v = [0.0] * len(params)  # Adam's second moment: a running mean of that gradient squared

    for step in range(num_steps):

        # Take one document and tokenize it, with BOS on both sides. Predicting from the first
        # BOS teaches how names begin; predicting the last one teaches where they end.
        doc = docs[step % len(docs)]  # one after the other (% starts again after the last)
        tokens = [BOS] + [uchars.index(ch) for ch in doc] + [BOS]
        # Each token but the last is followed by one to predict. A name longer than the
        # context is cut to its first block_size predictions.
        n = min(block_size, len(tokens) - 1)

        # Forward: predict each next token with a fresh KV cache, building the graph to the loss
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        losses = []
        for pos_id in range(n):
            token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
            logits = gpt(token_id, pos_id, keys, values, state_dict)
            probs = softmax(logits)
            # -log p (the log first, then the minus) is 0 when the model was sure of the right
            # token, and grows the less likely it thought that token was
            loss_t = -probs[target_id].log()
            losses.append(loss_t)
        loss = (1 / n) * sum(losses)  # the mean, so that long and short names weigh the same
        # Not in the post: a loss that is inf or nan means the numbers blew up (the learning
        # rate is too large). Stop now, before backward spreads the nan into every weight.
        if not math.isfinite(loss.data):
            raise FloatingPointError(f"the loss is {loss.data}")

        # Backward: the gradient of the loss with respect to every parameter
        loss.backward()

        # Adam: each parameter moves against its gradient by lr_t * m_hat / sqrt(v_hat). The
        # ratio is the gradient's running mean divided by its typical size, so a parameter
        # moves by typically about lr_t, whether its gradients are large or small.
        lr_t = learning_rate * (1 - step / num_steps)
        for i, p in enumerate(params):
            m[i] = beta1 * m[i] + (1 - beta1) * p.grad
            v[i] = beta2 * v[i] + (1 - beta2) * p.grad ** 2
            # m and v start at 0, so in the first steps they are too small. Dividing by
            # 1 - beta ** (step + 1), which starts small and grows toward 1, makes up for that.
            m_hat = m[i] / (1 - beta1 ** (step + 1))
            v_hat = v[i] / (1 - beta2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat ** 0.5 + eps_adam)
            # backward() adds into grad (+=), so clear it for the next step. The other Values
            # need no clearing: the next step builds a new graph.
            p.grad = 0

        # end="\r" returns to the start of the line, so the next step's line overwrites this one
        print(f"step {step + 1:4d} / {num_steps:4d} | loss {loss.data:.4f}", end="\r")
        step_losses.append(loss.data)


# Inference: the trained model makes up new names, one token at a time, until it picks BOS.
temperature = 0.5  # the logits are divided by it; below 1 the likeliest tokens win more often
num_samples = 20   # how many names to make up
prompt = ""        # Not in the post: letters that every name starts with (the flag --prompt)


def inference(uchars, BOS, vocab_size, state_dict, samples):
    # Not in the post: samples, a list from the caller, to which each name made up is added
    print("\n--- inference (new, hallucinated names) ---")
    for sample_idx in range(num_samples):
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        token_id = BOS
        sample = []
        # Not in the post: a prompt's letters take the steps of the loop below, one position
        # each (BOS at 0, the first letter at 1, ...), but each letter is given instead of
        # drawn. The model runs only to fill the KV cache; its logits are not used. The last
        # letter is fed at the loop's first position.
        for ch in prompt:
            gpt(token_id, len(sample), keys, values, state_dict)
            token_id = uchars.index(ch)
            sample.append(ch)

        for pos_id in range(len(sample), block_size):  # (from 0 when there is no prompt)
            logits = gpt(token_id, pos_id, keys, values, state_dict)
            probs = softmax([logit / temperature for logit in logits])
            # Not in the post: stop rather than draw from inf or nan. Either the model's own
            # scores blew up, because its weights did, or only the probabilities did, because
            # dividing by a tiny temperature overflowed.
            if not all(math.isfinite(logit.data) for logit in logits):
                raise FloatingPointError("the logits are not finite")
            if not all(math.isfinite(p.data) for p in probs):
                raise OverflowError("NaN probabilities")
            # Draw one token id, each as likely as its probability (choices returns a list)
            token_id = random.choices(range(vocab_size), weights=[p.data for p in probs])[0]
            if token_id == BOS:  # the model says that the name ends here
                break
            sample.append(uchars[token_id])
        print(f"sample {sample_idx + 1:2d}: {''.join(sample)}")
        samples.append("".join(sample))


# Efficiency: the same program, faster, and not one bit different. As the post says, the code
# above is the complete algorithm, and everything else is just efficiency. run() swaps these in
# for the plain code above while it runs (see efficiency() below); --plain runs without them.
# Each says why its numbers are the same; tests/test_efficiency.py checks it, bit for bit.
import contextlib  # noqa: E402 (the algorithm needs math, os and random only)
import gc  # noqa: E402
import sys  # noqa: E402


def fused_dot(a, b):
    # dot(a, b) as one node instead of 2n. The same products, added in the same order from 0,
    # give the same value. Backward hands each factor the same share (the other factor times
    # this node's grad), because the '+' nodes it skips pass their grad on times 1, exactly.
    data, children, local_grads = 0, [], []
    for ai, bi in zip(a, b):
        data += ai.data * bi.data
        children.append(ai)
        children.append(bi)
        local_grads.append(bi.data)
        local_grads.append(ai.data)
    return Value(data, children, local_grads)


def fused_sum(terms):
    # sum(terms) as one node: the same additions, in order, from 0; each term's grad is this one's
    data = 0
    for t in terms:  # a loop, not sum() of the floats: Python 3.12's sum() rounds more exactly
        data += t.data
    return Value(data, terms, [1] * len(terms))


def fused_linear(x, w):  # linear() with one node per row (fused_dot)
    return [fused_dot(wo, x) for wo in w]


def fused_softmax(logits):  # softmax() with its total as one node (fused_sum)
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = fused_sum(exps)
    return [e / total for e in exps]


def fused_rmsnorm(x):  # rmsnorm() with its sum of squares as one node (fused_dot)
    ms = fused_dot(x, x) / len(x)
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def add_constant_free(self, other):
    # No node for a plain number: nothing reads a constant's grad, and with it gone from the
    # graph, backward visits the other nodes in the same order
    if isinstance(other, Value):
        return Value(self.data + other.data, (self, other), (1, 1))
    return Value(self.data + other, (self,), (1,))


def mul_constant_free(self, other):  # as add_constant_free
    if isinstance(other, Value):
        return Value(self.data * other.data, (self, other), (other.data, self.data))
    return Value(self.data * other, (self,), (other,))


def exp_once(self):  # math.exp once, not twice: the same number either way
    e = math.exp(self.data)
    return Value(e, (self,), (e,))


def backward_without_recursion(self):
    # build_topo's order without its recursion, which a deep graph would take past Python's
    # recursion limit. The stack holds the nodes build_topo would be inside of, each with
    # the children still to visit; a leaf has nothing to hand on, so it is left out.
    topo = []
    visited = {self}
    stack = [(self, iter(self._children))]
    while stack:
        v, children = stack[-1]
        for child in children:  # resumes after the children visited before
            if child._children and child not in visited:
                visited.add(child)
                stack.append((child, iter(child._children)))
                break
        else:  # no child left to visit: v follows all of them
            stack.pop()
            topo.append(v)
    self.grad = 1
    for v in reversed(topo):
        for child, local_grad in zip(v._children, v._local_grads):
            child.grad += local_grad * v.grad


FAST_FUNCTIONS = {"linear": fused_linear, "softmax": fused_softmax, "rmsnorm": fused_rmsnorm,
                  "dot": fused_dot}
FAST_METHODS = {"__add__": add_constant_free, "__mul__": mul_constant_free, "exp": exp_once,
                "backward": backward_without_recursion}


@contextlib.contextmanager
def efficiency(enabled=True):
    """While a run lasts: the fast versions above in place of the plain ones, and on CPython no
    cycle collector. After it, everything is as it was."""
    if not enabled:
        yield
        return
    plain_functions = {name: globals()[name] for name in FAST_FUNCTIONS}
    plain_methods = {name: vars(Value)[name] for name in FAST_METHODS}
    collector_was_on = gc.isenabled()
    try:
        globals().update(FAST_FUNCTIONS)
        for name, method in FAST_METHODS.items():
            setattr(Value, name, method)
        # The fast graph has no reference cycles, so CPython frees it by reference counting
        # alone, and the collector only costs time. (The plain build_topo refers to itself, a
        # cycle that holds a whole graph until the collector runs: --plain leaves it on.) PyPy
        # needs its collector for everything.
        if sys.implementation.name == "cpython":
            gc.disable()
        yield
    finally:
        globals().update(plain_functions)
        for name, method in plain_methods.items():
            setattr(Value, name, method)
        if collector_was_on:
            gc.enable()


# Plumbing: the command line, the download, saving and loading a model, looking inside it, and
# one clear line for each failure a user can cause. Nothing here changes what is computed.
import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import reprlib  # noqa: E402
import tempfile  # noqa: E402
import unicodedata  # noqa: E402

# The run's own settings, besides those of the algorithm above
load_path = ""      # sample from this saved model instead of training (--load)
save_path = ""      # after training, save the model to this file (--save)
plain = False       # run the algorithm exactly as written above, without Efficiency (--plain)
inspect_text = ""   # after sampling, show what the model does with this text (--inspect)

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt"

# Every flag: its name and placeholder in --help, the setting it sets, its type, the values it
# allows, its role and what it means. The role says what a saved model does with it:
#   shape     the file keeps it, so it cannot go with --load (the file's value holds)
#   training  no training runs with --load, so it cannot go with it; the file does not keep it
#   sampling  the file keeps it; given with --load, the flag's value is used instead
#   run       this run's alone: it goes with anything, and no file keeps it
Flag = collections.namedtuple("Flag", "name metavar setting type rule role meaning")
FLAGS = [
    Flag("--input", "FILE", "input_path", str, "not empty", "training",
         "training text, one document per line"),
    Flag("--seed", "N", "seed", int, "", "run", "random seed"),
    Flag("--n-layer", "N", "n_layer", int, "> 0", "shape", "number of transformer layers"),
    Flag("--n-embd", "N", "n_embd", int, "> 0", "shape", "width of the embeddings"),
    Flag("--n-head", "N", "n_head", int, "> 0", "shape", "attention heads; must divide --n-embd"),
    Flag("--block-size", "N", "block_size", int, "> 0", "shape",
         "longest context; longer documents are cut"),
    Flag("--num-steps", "N", "num_steps", int, ">= 0", "training",
         "training steps, one document each"),
    Flag("--learning-rate", "LR", "learning_rate", float, ">= 0", "training",
         "Adam's learning rate, decayed to 0"),
    Flag("--temperature", "T", "temperature", float, "> 0", "sampling",
         "sampling temperature; lower: safer"),
    Flag("--num-samples", "N", "num_samples", int, ">= 0", "sampling",
         "names to sample after training"),
    Flag("--prompt", "TEXT", "prompt", str, "", "run", "text that every sample starts with"),
    Flag("--save", "FILE", "save_path", str, "not empty", "training",
         "after training, save the model to this JSON file"),
    Flag("--load", "FILE", "load_path", str, "not empty", "run",
         "sample from a model saved with --save, without training"),
    Flag("--plain", "", "plain", bool, "", "run",
         "run the algorithm as written, without the Efficiency section (slower)"),
    Flag("--inspect", "TEXT", "inspect_text", str, "not empty", "run",
         "after sampling, show what the model does with this text"),
]
DEFAULTS = {flag.setting: globals()[flag.setting] for flag in FLAGS}  # the values written above
CLOSED_PIPE = 141  # the exit status a shell reports for a program stopped by a closed pipe


def allowed(value, rule):
    if rule == "not empty":
        return value != ""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if rule == "> 0":
        return value > 0
    if rule == ">= 0":
        return value >= 0
    return True


def parse_flags(argv=None):
    """{setting: value} for each flag given, checked; otherwise a usage error (exit 2)."""
    parser = argparse.ArgumentParser("microgpt", argument_default=argparse.SUPPRESS,
                                     description="Train a tiny GPT on a list of names, then "
                                                 "make up new ones.")
    for flag in FLAGS:
        if flag.type is bool:
            parser.add_argument(flag.name, dest=flag.setting, action="store_true",
                                help=flag.meaning)
            continue
        default = DEFAULTS[flag.setting]
        meaning = f"{flag.meaning} (default: {default})" if default != "" else flag.meaning
        parser.add_argument(flag.name, dest=flag.setting, type=flag.type, metavar=flag.metavar,
                            help=meaning)
    given = vars(parser.parse_args(argv))

    for flag in FLAGS:
        value = given.get(flag.setting)
        if flag.setting not in given or allowed(value, flag.rule):
            continue
        if flag.rule == "not empty":
            parser.error(f"{flag.name} must not be empty")
        parser.error(f"{flag.name} must be a finite number {flag.rule}, not {reprlib.repr(value)}")
    if "load_path" in given:
        for flag in FLAGS:
            if flag.setting in given and flag.role == "shape":
                raise Failure(f"{flag.name} cannot go with --load: the model file fixes the shape",
                              2)
            if flag.setting in given and flag.role == "training":
                raise Failure(f"{flag.name} cannot go with --load: no training runs with --load",
                              2)
    else:
        embd = given.get("n_embd", DEFAULTS["n_embd"])
        head = given.get("n_head", DEFAULTS["n_head"])
        if embd % head:
            parser.error(f"--n-embd ({embd}) must be divisible by --n-head ({head})")
    return given


def use_settings(settings):
    """The one place that changes the settings written above (each must be one of them)."""
    for name, value in settings.items():
        if name not in DEFAULTS:
            raise KeyError(f"{name} is not a setting")
        globals()[name] = value


class Failure(Exception):
    """What a user can cause and fix: one line on standard error, and an exit status."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class OutputFailure(Failure):
    """Standard output could not take what was printed: full, closed, or not able to encode it."""


class BadModel(Exception):
    """A model file that is not as --save writes it; the message names the field at fault."""


class Output:
    """Standard output during a run: a write that fails is the output's failure, whoever wrote.
    It also knows whether the last thing written was a step line, left open by its \\r."""

    def __init__(self, stream):
        self.stream = stream
        self.mid_line = False

    def write(self, text):
        try:
            written = self.stream.write(text)
        except (OSError, UnicodeEncodeError) as e:
            raise output_failure(e) from None
        if text:
            self.mid_line = text.endswith("\r")
        return written

    def flush(self):
        try:
            self.stream.flush()
        except OSError as e:
            raise output_failure(e) from None


def output_failure(e):
    if isinstance(e, BrokenPipeError):  # the reader has gone (`| head`): nothing to say
        return OutputFailure("", CLOSED_PIPE)
    if isinstance(e, UnicodeEncodeError):
        return OutputFailure(f"{e.encoding} output cannot show {e.object[e.start]!r}: "
                             f"PYTHONIOENCODING=utf-8")
    return OutputFailure(f"cannot write the output: {describe(e)}")


def tell(line):
    """A line on standard error; when even that cannot be written, there is nobody to tell."""
    if sys.stderr is None:
        return
    try:
        print(f"microgpt: {line}", file=sys.stderr)
    except OSError:
        pass


def describe(e):  # an OSError as a user reads it: "no such file or directory"
    return e.strerror.lower() if e.strerror else str(e)


def out_of_range(e):
    """Whether an error is the numbers' own, not a bug's: too large (OverflowError), not numbers
    at all (FloatingPointError, from the checks in train() and inference()), or the log of 0 (a
    ValueError raised in Value.log)."""
    if isinstance(e, (OverflowError, FloatingPointError)):
        return True
    where = e.__traceback__
    while where.tb_next is not None:  # down to the frame that raised it
        where = where.tb_next
    return isinstance(e, ValueError) and where.tb_frame.f_code is Value.log.__code__


def reason(e):  # what a numeric error says: OverflowError(34, 'Numerical result out of range')
    return e.args[-1] if e.args else type(e).__name__


def write_atomically(path, data):
    """All of data at path, or nothing: written to a new file of this run's own in the same
    folder (another run writing the same path has its own), then renamed."""
    fd, part = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".microgpt-",
                                suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file for its owner only: give it the mode a new file gets
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(part, 0o666 & ~umask)
        os.replace(part, path)
    except BaseException:  # failed or interrupted: remove this run's file, and only it
        if os.path.exists(part):  # (gone if the rename itself was done)
            os.remove(part)
        raise


def download_names(path):
    import http.client  # here, not at the top: most runs never need them, and they cost 6 MB
    import urllib.request
    tell(f"{path} not found, downloading {NAMES_URL}")
    try:
        with urllib.request.urlopen(NAMES_URL, timeout=30) as response:
            data = response.read()
    except (OSError, http.client.HTTPException) as e:  # refused, 404, cut off midway, ...
        raise Failure(f"cannot download {NAMES_URL} to {path} ({getattr(e, 'reason', e)}): "
                      f"use --input") from None
    try:
        write_atomically(path, data)
    except OSError as e:
        raise Failure(f"cannot write {path}: {describe(e)}") from None


def first_bad_byte(path):  # where a file stops being UTF-8, counted in bytes from 0
    with open(path, "rb") as f:
        try:
            f.read().decode("utf-8")
        except UnicodeDecodeError as e:
            return e.start


def read_input(path):
    """The reading phase: the documents, or a Failure saying why there are none."""
    try:
        docs = load_docs(path)
    except KeyboardInterrupt:
        raise Failure(f"interrupted while reading {path}", 130) from None
    except UnicodeDecodeError:
        where = first_bad_byte(path)
        raise Failure(f"cannot read {path}: not valid UTF-8 at byte {where}") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {describe(e)}") from None
    if not docs:
        raise Failure(f"{path} has no documents: it is empty or has only blank lines")
    return docs


def check_texts(uchars):
    """--prompt and --inspect hold only letters the model knows, and the prompt fits in its
    context; otherwise a Failure with the usage error's status, 2."""
    for flag, text in (("--prompt", prompt), ("--inspect", inspect_text)):
        for ch in text:
            if ch not in uchars:
                raise Failure(f"{flag}: {ch!r} is not in the vocabulary: {''.join(uchars)!r}", 2)
    if len(prompt) > block_size:
        raise Failure(f"--prompt: {len(prompt)} characters do not fit in the model's context of "
                      f"{block_size} (--block-size)", 2)


def run_training(docs, uchars, BOS, state_dict, params):
    """The training phase: each step's loss, or a Failure that names the step."""
    step_losses = []
    try:
        train(docs, uchars, BOS, state_dict, params, step_losses)
    except KeyboardInterrupt:
        raise Failure(f"interrupted at step {len(step_losses) + 1}", 130) from None
    except (ArithmeticError, ValueError) as e:
        if not out_of_range(e):
            raise
        raise Failure(f"numbers out of range at step {len(step_losses) + 1} ({reason(e)}): "
                      f"try a smaller --learning-rate") from None
    except RecursionError:
        if not plain:
            raise
        raise Failure(f"at step {len(step_losses) + 1}, the graph is too deep for the "
                      f"recursive build_topo of --plain: run without --plain") from None
    return step_losses


def run_sampling(uchars, BOS, vocab_size, state_dict):
    """The sampling phase: the names made up, or a Failure with the likely cause."""
    samples = []
    try:
        inference(uchars, BOS, vocab_size, state_dict, samples)
    except KeyboardInterrupt:
        raise Failure("interrupted during sampling", 130) from None
    except (ArithmeticError, ValueError) as e:
        if not out_of_range(e):
            raise
        if not isinstance(e, FloatingPointError):  # a sane model, too cold: it overflowed
            advice = "try a larger --temperature"
        elif load_path:
            advice = "the model's weights are too large to use"
        else:  # the model's own scores are not numbers: its weights blew up
            advice = "try a smaller --learning-rate"
        raise Failure(f"numbers out of range during sampling ({reason(e)}): {advice}") from None
    return samples


# A saved model, as JSON: nanoGPT's checkpoint idea, named fields and nothing else
MODEL_VERSION = 2
MODEL_FIELDS = ["microgpt", "model_args", "sampling", "uchars", "random_state", "state_dict"]
SHAPE = [flag.setting for flag in FLAGS if flag.role == "shape"]
SAMPLING = [flag.setting for flag in FLAGS if flag.role == "sampling"]


def save_model(path, uchars, state_dict):
    """The saving phase: every field of a model file, or a Failure."""
    if not all(math.isfinite(p.data) for mat in state_dict.values() for row in mat for p in row):
        raise Failure(f"cannot save {path}: the weights are not all finite numbers: "
                      f"try a smaller --learning-rate")
    model = {"microgpt": MODEL_VERSION,
             "model_args": {name: globals()[name] for name in SHAPE},
             "sampling": {name: globals()[name] for name in SAMPLING},
             "uchars": "".join(uchars),
             "random_state": random.getstate(),  # where sampling starts: the same names again
             "state_dict": {name: [[p.data for p in row] for row in mat]  # repr: exact floats
                            for name, mat in state_dict.items()}}
    try:
        write_atomically(path, json.dumps(model, indent=1).encode("utf-8"))
    except KeyboardInterrupt:
        raise Failure("interrupted while saving", 130) from None
    except OSError as e:
        raise Failure(f"cannot write {path}: {describe(e)}") from None


def matrix_shapes(model_args, vocab_size, most_layers):
    """{name: (rows, columns)} of every matrix, as init_params makes them (for at most
    most_layers layers: a file cannot hold more layers than matrices)."""
    n = model_args["n_embd"]
    shapes = {"wte": (vocab_size, n), "wpe": (model_args["block_size"], n),
              "lm_head": (vocab_size, n)}
    for i in range(min(model_args["n_layer"], most_layers)):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes[f"layer{i}.{name}"] = (n, n)
        shapes[f"layer{i}.mlp_fc1"] = (4 * n, n)
        shapes[f"layer{i}.mlp_fc2"] = (n, 4 * n)
    return shapes


def is_int(x):
    return type(x) is int  # not bool, which is an int too


def is_number(x):  # a JSON number that is a finite float, or an int a float holds exactly
    if type(x) is float:
        return math.isfinite(x)
    return is_int(x) and abs(x) <= 2**53


def check_fields(found, where, expected):
    """The same field names as expected, or BadModel naming the first odd one."""
    if not isinstance(found, dict):
        raise BadModel(f"{where} is not an object of fields")
    for name in expected:
        if name not in found:
            raise BadModel(f"{where} has no field {name!r}")
    for name in found:
        if name not in expected:
            raise BadModel(f"{where} has an unknown field {reprlib.repr(name)}")


def check_model(model):
    """A model file's JSON, checked field by field, as a dict of settings, uchars, state_dict
    and random_state; or BadModel, naming the field at fault."""
    if not isinstance(model, dict) or "microgpt" not in model:
        raise BadModel("not a microgpt model")
    version = model["microgpt"]
    if is_int(version) and version == 1:
        raise BadModel("a model in the old format of microgpt 1.x: train and --save it again")
    if not is_int(version) or version != MODEL_VERSION:
        raise BadModel(f"format version {reprlib.repr(version)}, not {MODEL_VERSION}")
    check_fields(model, "the model", MODEL_FIELDS)

    args = model["model_args"]
    check_fields(args, "model_args", SHAPE)
    for name in SHAPE:
        if not (is_int(args[name]) and args[name] > 0):
            raise BadModel(f"model_args.{name} must be an integer > 0, "
                           f"not {reprlib.repr(args[name])}")
    if args["n_embd"] % args["n_head"]:
        raise BadModel(f"model_args.n_embd ({args['n_embd']}) is not divisible by "
                       f"model_args.n_head ({args['n_head']})")

    sampling = model["sampling"]
    check_fields(sampling, "sampling", SAMPLING)
    temperature, num_samples = sampling["temperature"], sampling["num_samples"]
    if not (is_number(temperature) and temperature > 0):
        raise BadModel(f"sampling.temperature must be a number > 0, not "
                       f"{reprlib.repr(temperature)}")
    if not (is_int(num_samples) and num_samples >= 0):
        raise BadModel(f"sampling.num_samples must be an integer >= 0, not "
                       f"{reprlib.repr(num_samples)}")

    uchars = model["uchars"]
    if not (isinstance(uchars, str) and uchars and list(uchars) == sorted(set(uchars))):
        raise BadModel("uchars must be the vocabulary's characters, each once, in order")

    found = model["state_dict"]
    shapes = matrix_shapes(args, len(uchars) + 1, len(found) if isinstance(found, dict) else 0)
    check_fields(found, "state_dict", shapes)
    state_dict = {}
    for name, (rows, cols) in shapes.items():
        mat = found[name]
        if not (isinstance(mat, list) and len(mat) == rows and all(
                isinstance(row, list) and len(row) == cols and all(map(is_number, row))
                for row in mat)):
            raise BadModel(f"state_dict.{name} is not {rows} x {cols} finite numbers")
        state_dict[name] = [[Value(float(x)) for x in row] for row in mat]

    state = model["random_state"]
    try:  # as random.getstate() gives it, checked by a random stream of its own
        random_state = (state[0], tuple(state[1]), state[2])
        if not (state[2] is None or type(state[2]) is float):
            raise ValueError("gauss_next")
        random.Random().setstate(random_state)
    except (TypeError, ValueError, IndexError, KeyError, OverflowError):
        raise BadModel("random_state is not a state of Python's random module") from None

    settings = {**args, "temperature": float(temperature), "num_samples": num_samples}
    return {"settings": settings, "uchars": list(uchars), "state_dict": state_dict,
            "random_state": random_state}


def read_model(path):
    """The reading phase, for --load: the checked fields of a saved model, or a Failure."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except KeyboardInterrupt:
        raise Failure(f"interrupted while reading {path}", 130) from None
    except UnicodeDecodeError as e:
        raise Failure(f"cannot read {path}: not valid UTF-8 at byte {e.start}") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {describe(e)}") from None
    try:
        model = json.loads(text)
    except RecursionError:
        raise Failure(f"cannot read {path}: not a microgpt model (nested too deep)") from None
    except ValueError as e:  # not JSON (json says where), or a number too long to read
        raise Failure(f"cannot read {path}: {e}") from None
    try:
        return check_model(model)
    except BadModel as e:
        raise Failure(f"cannot read {path}: {e}") from None


def shown(uchars, token_id):
    """A token as the inspection shows it: BOS as BOS, a space as ␣, a tab as \\t, ..."""
    if token_id == len(uchars):
        return "BOS"
    ch = uchars[token_id]
    if ch == " ":
        return "␣"
    if not ch.isprintable():
        return repr(ch)[1:-1]
    return ch


def width(text):
    """How many columns text takes in a terminal: Hangul and CJK take two each."""
    columns = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue  # drawn over the character before it
        columns += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return columns


def pad(text, columns):  # text, then spaces up to `columns` terminal columns
    return text + " " * (columns - width(text))


def look_inside(text, uchars, BOS, state_dict):
    """What the model does with text, tokenized as training tokenizes a document. Per position:
    (token seen, next token, the probability of every next token, -log p of the real one); the
    mean -log p, which is the loss training computes for this document; and per position, the
    attention weights of every layer and head. Draws no random number, changes no weight."""
    tokens = [BOS] + [uchars.index(ch) for ch in text] + [BOS]
    n = min(block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
    rows, losses, attention = [], [], []
    real_softmax = softmax

    def recording_softmax(logits):  # within gpt(), softmax gives only the attention weights
        weights = real_softmax(logits)
        attention[-1].append([w.data for w in weights])
        return weights

    for pos_id in range(n):
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        attention.append([])  # this position's weights: each layer's heads, in order
        globals()["softmax"] = recording_softmax
        try:
            logits = gpt(token_id, pos_id, keys, values, state_dict)
        finally:
            globals()["softmax"] = real_softmax
        probs = softmax(logits)  # temperature 1, as in training
        loss_t = -probs[target_id].log()
        losses.append(loss_t)
        rows.append((token_id, target_id, [p.data for p in probs], loss_t.data))
    loss = (1 / n) * sum(losses)
    return rows, loss.data, attention


def print_inspection(text, uchars, rows, loss, attention):
    def label(token_id):
        return shown(uchars, token_id)

    def line(*cells):
        print("  ".join(cells).rstrip())

    token = max(width(label(t)) for t in range(len(uchars) + 1))  # the widest token, BOS at least
    col = max(token, 4)
    print(f"\n--- inspect {text!r}: what the model expects after each token ---")
    line(pad("seen", col), pad("next", col), "p(next)", "-log p", "likeliest next tokens")
    for token_id, target_id, probs, loss_t in rows:
        likeliest = sorted(range(len(probs)), key=lambda t: -probs[t])[:5]
        top = "  ".join(f"{pad(label(t), token)} {probs[t]:.3f}" for t in likeliest)
        line(pad(label(token_id), col), pad(label(target_id), col), f"{probs[target_id]:7.4f}",
             f"{loss_t:6.4f}", top)
    print(f"mean -log p: {loss:.4f} (the loss training computes for this document)")

    seen = [label(token_id) for token_id, _, _, _ in rows]
    for li in range(n_layer):
        for h in range(n_head):
            print(f"\nattention, layer {li}, head {h}: how much each position (a row) takes from "
                  f"each one up to it")
            line(pad("", col), *(pad(s, col) for s in seen))
            for i, s in enumerate(seen):
                weights = attention[i][li * n_head + h]
                line(pad(s, col), *(pad(f"{w:.2f}", col) for w in weights))


def run_inspection(uchars, BOS, state_dict):
    """The inspecting phase: --inspect's tables, or a Failure."""
    try:
        rows, loss, attention = look_inside(inspect_text, uchars, BOS, state_dict)
    except KeyboardInterrupt:
        raise Failure("interrupted while inspecting", 130) from None
    except (ArithmeticError, ValueError) as e:
        if not out_of_range(e):
            raise
        raise Failure(f"numbers out of range while inspecting ({reason(e)})") from None
    print_inspection(inspect_text, uchars, rows, loss, attention)


def report_trend(step_losses):
    """One line on standard error: the mean loss of the first and the last tenth of the steps,
    and a sparkline of the mean of each twentieth. One step's loss is one name's: it jumps."""
    n = len(step_losses)
    k = max(1, n // 10)
    first = sum(step_losses[:k]) / k
    last = sum(step_losses[-k:]) / k
    parts = min(20, n)
    means = []
    for i in range(parts):
        part = step_losses[i * n // parts:(i + 1) * n // parts]
        means.append(sum(part) / len(part))
    low, high = min(means), max(means)
    spark = ""
    for m in means:
        level = 3 if high == low else round((m - low) / (high - low) * 7)
        spark += "▁▂▃▄▅▆▇█"[level]
    line = f"mean loss {first:.4f} over {steps(1, k)}, {last:.4f} over {steps(n - k + 1, n)}"
    if parts > 1:
        line += f"; {'in twentieths' if parts == 20 else 'step by step'}: {spark}"
    tell(line)


def steps(first, last):
    return f"step {first}" if first == last else f"steps {first}-{last}"


def report_known(samples, docs):
    """One line on standard error: which samples are documents of the training data."""
    known = [sample for sample in samples if sample in docs]  # (a set of docs costs 1 MB more)
    new = len(samples) - len(known)
    if known:
        tell(f"{len(known)} of the {len(samples)} samples {is_are(len(known))} in the training "
             f"data ({', '.join(known)}); {new} {is_are(new)} new")
    else:
        tell(f"none of the {len(samples)} samples is in the training data")


def is_are(count):
    return "is" if count == 1 else "are"


def run(given):
    """The post's program, phase by phase, with the settings given: each phase turns its own
    expected failures into a Failure, and lets anything else (a bug) keep its traceback."""
    settings = dict(DEFAULTS)
    model = None
    if "load_path" in given:
        model = read_model(given["load_path"])
        settings.update(model["settings"])  # the model's shape and sampling settings...
    settings.update(given)  # ...unless a flag says otherwise
    use_settings(settings)

    with efficiency(enabled=not plain):
        docs, step_losses = [], []
        if model:
            uchars, state_dict = model["uchars"], model["state_dict"]
            BOS, vocab_size = len(uchars), len(uchars) + 1
            check_texts(uchars)
            if "seed" in given:
                random.seed(seed)
            else:
                random.setstate(model["random_state"])  # as the saving run's sampling began
        else:
            random.seed(seed)
            docs = read_input(input_path)
            uchars, BOS, vocab_size = tokenizer(docs)
            check_texts(uchars)
            state_dict, params = init_params(vocab_size)
            step_losses = run_training(docs, uchars, BOS, state_dict, params)
            if save_path:
                save_model(save_path, uchars, state_dict)

        samples = run_sampling(uchars, BOS, vocab_size, state_dict)
        if step_losses:
            report_trend(step_losses)
        if docs and samples:
            report_known(samples, docs)
        if inspect_text:
            run_inspection(uchars, BOS, state_dict)


def main(argv=None):
    stdout = sys.stdout
    settings = {name: globals()[name] for name in DEFAULTS}  # to put back after the run
    sys.stdout = Output(stdout)
    try:
        try:
            run(parse_flags(argv))  # a usage error exits in parse_flags, with status 2
        finally:
            sys.stdout.flush()  # however the run ends, a full or closed output shows here
    except KeyboardInterrupt:  # between phases
        end_step_line()
        tell("interrupted")
        sys.exit(130)
    except MemoryError:
        end_step_line()
        tell("out of memory: try a smaller --n-layer, --n-embd or --block-size")
        sys.exit(1)
    except Failure as failure:
        if isinstance(failure, OutputFailure):
            silence(stdout)
        else:
            end_step_line()
        if str(failure):
            tell(str(failure))
        sys.exit(failure.code)
    finally:
        sys.stdout = stdout
        use_settings(settings)


def end_step_line():
    """End a step line that a failure interrupted (it ends in \\r), so that the error that
    follows does not overwrite it in a terminal."""
    if isinstance(sys.stdout, Output) and sys.stdout.mid_line:
        try:
            sys.stdout.write("\n")
            sys.stdout.flush()
        except Failure:
            pass


def silence(stream):
    """Point a failed standard output at /dev/null, so that Python's own flush at exit cannot
    fail again and print a traceback (what Python's documentation advises for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # not a real file (under a test, say)
        pass


if __name__ == "__main__":
    main()
