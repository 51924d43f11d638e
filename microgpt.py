"""microgpt: the GPT of Andrej Karpathy's blog post "microgpt" (February 2026), in one file of
pure Python. It trains on a list of names, then makes up new ones. It is the same algorithm as
the post's program: for the same input and seed it computes the same numbers, to the last bit.

Read it beside the post. The sections below follow the post's listings, in the same order and
with the same names; where this file adds something, a comment says "Not in the post". After
them come an Efficiency section and the plumbing (the command line, saving, loading, errors).

Run it with: python microgpt.py. A run uses the code you read, except that dot(), softmax() and
Value's +, * and backward() are swapped for faster versions (the Efficiency section) that give
exactly the same numbers. Edit the code of any of those (or of Value's __radd__; a comment does
not count), and the run switches them all back to the code as written, and says so: it is then
8 to 14 times slower (CPython 3.9 to 3.13). The flag --plain does the same without an edit.

After sampling, three lines go to standard error: the mean loss as training went; the loss on
names it never trained on, beside names it did (close numbers: it learned what names are like;
a much lower second one: it learned its names by heart); the made-up names that are real ones."""
import math    # log, exp, and isfinite (False for inf and for nan, "not a number")
import os      # os.path.exists, to see whether input.txt is there yet (the plumbing uses more)
import random  # the random numbers: seed, shuffle, gauss (first weights), choices (sampling)

# How it runs: the post's program runs its listings from top to bottom. Here each listing below
# is a function, so that importing this file runs nothing. The functions take as arguments, and
# return, what the post keeps in global variables; the settings (n_layer, num_steps, ...) stay
# global, as in the post. In the post's order, the program is:
#     random.seed(seed)
#     docs = load_docs(input_path)
#     uchars, BOS, vocab_size = tokenizer(docs)
#     state_dict, params = init_params(vocab_size)
#     train(docs, uchars, BOS, state_dict, params)
#     inference(uchars, BOS, vocab_size, state_dict)
# run(), in the plumbing at the end, calls them in this order, with the settings of the flags,
# and adds around them what the plumbing offers (a saved model, a prompt, the reports).

# Dataset: the documents to learn from, one per line of a text file. The default, input.txt,
# holds 32,033 names.
input_path = "input.txt"  # the file to learn from (the flag --input changes it)
# Where the post downloads input.txt from: makemore's list of names, at its commit 988aa59
names_url = "https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt"
seed = 42  # the seed of the random numbers, which decide the shuffle, first weights and samples


def load_docs(path):
    # As in the post: if input.txt is missing, download the list of names into it
    if path == "input.txt" and not os.path.exists(path):
        import urllib.request  # here, as in the post: most runs never need it
        # (Not in the post: the download goes to a file of another name, renamed to input.txt
        # only once it is whole, so that one cut off midway leaves no half list: see
        # whole_or_nothing, in the plumbing. And only input.txt is downloaded: a missing file of
        # another name is more likely a typo.)
        with whole_or_nothing(path) as part:
            urllib.request.urlretrieve(names_url, part)
    # (Not in the post: utf-8-sig drops a byte order mark, an invisible character that some
    # editors put at the start of a file, so that it does not stick to the first name.)
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
# from the loss back to every number the loss depends on. For example, in a Python shell:
#     >>> from microgpt import Value
#     >>> a, b = Value(2.0), Value(3.0)
#     >>> L = a * b + a      # 8.0
#     >>> L.backward()
#     >>> a.grad, b.grad     # (4.0, 2.0): dL/da = b + 1, along both paths from a; dL/db = a
class Value:
    # Only these fields, which saves memory (to give a Value another field, add its name here)
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data                 # the number itself, computed in the forward pass
        self.grad = 0                    # d loss / d this number, computed by backward()
        self._children = children        # the Values this one was computed from
        # How much this Value changes when each child changes a little (its derivative with
        # respect to that child), known already in the forward pass
        self._local_grads = local_grads

    def __add__(self, other):
        # A plain number is wrapped in a Value with no children: a constant
        other = other if isinstance(other, Value) else Value(other)
        # d(a+b)/da and d(a+b)/db are both 1
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
n_head = 4       # attention heads; each works on its own slice of q, k and v, head_dim numbers
# (head_dim = n_embd // n_head: gpt() computes it, as the flags may change n_embd and n_head)


def matrix(nout, nin, std=0.08):
    # nout rows of nin small random numbers (std 0.08 is the post's choice): small, so that at
    # first every logit is near 0, and softmax gives every next token about the same chance
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
    # All the parameters in one flat list, for the optimizer: matrix by matrix, row by row. With
    # the defaults and 27 tokens that is 4,192: wte, wpe and lm_head 27*16 + 16*16 + 27*16 = 1,120,
    # then the layer's four attention matrices 4 * 16*16 = 1,024 and its MLP 2 * 64*16 = 2,048.
    params = [p for mat in state_dict.values() for row in mat for p in row]
    print(f"num params: {len(params)}")
    return state_dict, params


# Architecture: GPT-2, with small differences. The vectors are normalized by RMSNorm instead of
# LayerNorm: it divides a vector by the root of its mean square, where LayerNorm also subtracts
# the mean, and here it has no learned gain. There is an rmsnorm right after the embeddings too,
# and none before lm_head. No layer adds a bias, and the MLP uses ReLU instead of GeLU. gpt()
# takes one token and its position, and gives logits: a score for every possible next token.
# (Not in the post: gpt() also takes the weights, state_dict, as an argument, where the post
# reads them from a global name.)

# Not in the post: a name for the sum of products that linear(), rmsnorm() and attention all
# compute (the post writes it out each time). The same products, added in the same order (in
# floating point, another order could change the last bit).
def dot(a, b):  # a[0]*b[0] + a[1]*b[1] + ...
    return sum(ai * bi for ai, bi in zip(a, b))


# [len(x)] -> [len(w)]: each row of w dotted with x. (The post names a row wo, the weights of
# one output; unrelated to attn_wo, attention's output matrix below.)
def linear(x, w):
    return [dot(wo, x) for wo in w]


def softmax(logits):  # scores -> probabilities: positive, and adding up to 1
    # Subtracting the largest score changes no probability (e^-max cancels in the division),
    # and then no exp is above 1, so none can overflow. As the probabilities do not depend on
    # max_val, it can be a plain number, with no gradient.
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = sum(exps)
    return [e / total for e in exps]


def rmsnorm(x):  # rescale x so that the mean of its squares is 1
    ms = dot(x, x) / len(x)
    scale = (ms + 1e-5) ** -0.5  # 1 / sqrt(ms); the 1e-5 keeps an all-zero x from dividing by 0
    return [xi * scale for xi in x]


def gpt(token_id, pos_id, keys, values, state_dict):
    # The KV cache: keys[li] is the list of k vectors of layer li, one for each position so
    # far, and values[li] the list of its v vectors. Training and sampling feed one position at
    # a time, and the cache is how a position sees the ones before it.
    tok_emb = state_dict["wte"][token_id]  # what the token is
    pos_emb = state_dict["wpe"][pos_id]    # where it is
    # Added number by number, not joined end to end: x stays n_embd long, and training learns
    # to keep both in the same numbers
    x = [t + p for t, p in zip(tok_emb, pos_emb)]  # both at once: this token, at this place
    # The post marks this line "not redundant", though each block normalizes its input again:
    # a block normalizes only the copy of x that it works on, while this x itself is carried,
    # through the residual additions below, all the way to the logits (and its gradient comes
    # back the same way).
    x = rmsnorm(x)

    for li in range(n_layer):
        # 1) Multi-head attention: this position takes in what it needs from itself and the
        # positions before it. The cache holds no later position, so a position never sees the
        # letters after it (attention is "causal"). Each head has its own slice of q, k and v,
        # so each can look at other positions for reasons of its own (in the default run's
        # model, --inspect shows a head that looks at the start of the name, and one that looks
        # at the letter before).
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
        # Each head's share of the width. (Not in the post here: the post sets head_dim once, at
        # the top, but the flags or a loaded model may change n_embd and n_head after that.)
        head_dim = n_embd // n_head
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
            # weighted by attn_weights. [vt[j] for vt in v_h] is that column of v_h: with two
            # positions so far, weights [0.3, 0.7] and v vectors [1, 2] and [3, 4], element 0
            # is 0.3*1 + 0.7*3, and element 1 is 0.3*2 + 0.7*4.
            head_out = [dot(attn_weights, [vt[j] for vt in v_h]) for j in range(head_dim)]
            x_attn.extend(head_out)
        x = linear(x_attn, state_dict[f"layer{li}.attn_wo"])  # the heads, mixed back together
        # Residual: the block's output is added to its input, so the block only has to learn a
        # correction, and in backward the gradient flows straight through the + to earlier layers
        x = [a + b for a, b in zip(x, x_residual)]

        # 2) MLP (multilayer perceptron): attention moved information between positions; the MLP
        # works on this position's numbers alone. It widens them to 4 * n_embd (GPT-2's factor),
        # applies ReLU, and narrows them back.
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
# The size of Adam's steps at first; it falls linearly toward 0, so that the last steps only
# fine-tune
learning_rate = 0.01
# Adam keeps two running means, and at each step keeps this share of each (the rest is the new
# gradient's). The usual values are 0.9 and 0.999; smaller ones forget the past sooner (with
# 0.999, the squared gradients would be averaged over about 1,000 steps: this whole run).
beta1 = 0.85          # the running mean of the gradient keeps 85% of itself at each step
beta2 = 0.99          # and the running mean of the gradient squared keeps 99%
eps_adam = 1e-8       # keeps Adam from dividing by 0 when a parameter's gradients were all 0


def train(docs, uchars, BOS, state_dict, params):
    # One document per step, as in the post: no batches.
    m = [0.0] * len(params)  # Adam's first moment: a running mean of each parameter's gradient
    v = [0.0] * len(params)  # Adam's second moment: a running mean of that gradient squared
    step_losses = []  # Not in the post: each step's loss, handed back for a report on the trend

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
            # Not in the post: a check. A too large learning rate makes the numbers blow up,
            # and then the right token's probability is 0, which has no log, or nan ("not a
            # number"), which fails every comparison. Either way, stop here and say so.
            if not probs[target_id].data > 0:
                raise FloatingPointError(f"the model's numbers blew up at step {step + 1}")
            # -log p is 0 when the model was sure of the right token, and grows the less likely
            # it thought that token was. A model that knows nothing gives each token the same p:
            # for the names' 27 tokens, 1/27, a loss of ln 27, about 3.3, where training begins.
            loss_t = -probs[target_id].log()
            losses.append(loss_t)
        # The mean, so that long and short names weigh the same. (Written as the post writes it:
        # sum(losses) / n would round differently in the last bit.)
        loss = (1 / n) * sum(losses)

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
        # (in a terminal; some editors' consoles show each line instead)
        print(f"step {step + 1:4d} / {num_steps:4d} | loss {loss.data:.4f}", end="\r")
        step_losses.append(loss.data)
    return step_losses


# Inference: the trained model makes up new names, one token at a time, until it picks BOS.
temperature = 0.5  # the logits are divided by it; below 1 the likeliest tokens win more often
num_samples = 20   # how many names to make up


def inference(uchars, BOS, vocab_size, state_dict):
    samples = []  # Not in the post: the names made up, handed back for a report
    print("\n--- inference (new, hallucinated names) ---")
    for sample_idx in range(num_samples):
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        token_id = BOS
        sample = []
        for pos_id in range(block_size):
            # As written, the Values still record how they were computed, though nothing calls
            # backward(): each graph is simply freed when the next sample starts. (A fast run
            # skips that work: see dot_without_graph, in the Efficiency section.)
            logits = gpt(token_id, pos_id, keys, values, state_dict)
            probs = softmax([logit / temperature for logit in logits])
            # Not in the post: a check. If the numbers blew up (the model's, or the logits
            # divided by a tiny temperature), stop rather than draw from what is not a number.
            if not all(math.isfinite(p.data) for p in probs):
                raise FloatingPointError("the probabilities to draw from are not numbers")
            # Draw one token id, each as likely as its probability (choices returns a list)
            token_id = random.choices(range(vocab_size), weights=[p.data for p in probs])[0]
            if token_id == BOS:  # the model says that the name ends here
                break
            sample.append(uchars[token_id])
        print(f"sample {sample_idx + 1:2d}: {''.join(sample)}")
        samples.append("".join(sample))
    return samples


# Efficiency: the algorithm is complete above this line, and you may stop reading here.
#
# As the post says, everything else is just efficiency. This section is a miniature of what the
# post's "Real stuff" section calls fused kernels: one graph node (fused_dot, fused_softmax's
# total) does the work of many, with the same numbers to the last bit. A run swaps these in for
# the plain code above, unless you changed that code (efficiency(), below). Each device says why
# its numbers are the same, and the project's tests (tests/test_efficiency.py) check it.
# (noqa: E402 tells the linter that these imports come after code on purpose.)
import contextlib  # noqa: E402
import gc  # noqa: E402
import inspect  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import tokenize  # noqa: E402
import zlib  # noqa: E402


def fused_dot(a, b):
    # dot(a, b) of n terms as one node, instead of n products and n sums. The same products,
    # added in the same order from 0,
    # give the same value. Backward hands each factor the same share (the other factor times
    # this node's grad), because the '+' nodes it skips pass their grad on times 1, exactly; and
    # the shares reach each grad in the same order as in the plain graph (the tests check it).
    data, children, local_grads = 0, [], []
    for ai, bi in zip(a, b):
        data += ai.data * bi.data
        children.append(ai)
        children.append(bi)
        local_grads.append(bi.data)
        local_grads.append(ai.data)
    return Value(data, children, local_grads)


def dot_without_graph(a, b):
    # fused_dot's value (the same products, added in the same order), as a node without children:
    # for a forward pass that backward() never sees, as in PyTorch's torch.no_grad(). run() puts
    # it in place after training, for sampling and the reports.
    data = 0
    for ai, bi in zip(a, b):
        data += ai.data * bi.data
    return Value(data)


def fused_sum(terms):
    # sum(terms) as one node: the same additions, in order, from 0; each term's grad is this one's
    data = 0
    # A loop, not sum() of the floats: from Python 3.12, sum() of floats rounds more exactly,
    # and so differently from the plain code's chain of + nodes
    for t in terms:
        data += t.data
    return Value(data, terms, [1] * len(terms))


def fused_softmax(logits):  # softmax() with its total as one node (fused_sum)
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = fused_sum(exps)
    return [e / total for e in exps]


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


FAST_FUNCTIONS = {"dot": fused_dot, "softmax": fused_softmax}
FAST_METHODS = {"__add__": add_constant_free, "__mul__": mul_constant_free,
                "backward": backward_without_recursion}
# The plain code that these stand in for, or whose arithmetic they repeat (fused_sum adds from 0,
# as sum() does by calling __radd__), with a checksum of each as shipped. (When a change to the
# file needs new checksums, the tests say so.)
SHIPPED = {"dot": "20f9b2e8", "softmax": "077385d0",
           "Value.__add__": "7b2ef600", "Value.__radd__": "7c8c8e1c", "Value.__mul__": "8f25dfa7",
           "Value.backward": "624545da"}


# A checksum of a function's code without its comments and blank lines (of the tokens Python
# reads), or None when Python cannot show the function's source
def checksum(function):
    try:  # (of its code: a wrapper made by functools.wraps is not the function it wraps)
        source = inspect.getsource(function.__code__)
    except (AttributeError, OSError, TypeError):
        return None
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    code = " ".join(t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL))
    return f"{zlib.crc32(code.encode('utf-8')):08x}"


def edited():  # the names of the plain functions whose code is not as shipped
    functions = dict(globals())
    functions.update({f"Value.{name}": method for name, method in vars(Value).items()})
    return [name for name, shipped in SHIPPED.items() if checksum(functions.get(name)) != shipped]


# While a run lasts, the faster versions above stand in for the plain code, and CPython's cycle
# collector is off; afterwards everything is as it was. Not with --plain, nor once the plain
# code is edited, so that the edit runs. It gives True if it put the faster versions in place.
# (So a debugger's breakpoint in dot() or Value.__add__ stops there only with --plain, or once
# you edit them; and functions you call yourself, from a Python shell, run as written.)
@contextlib.contextmanager
def efficiency(plain=False):
    changed = [] if plain else edited()
    if changed:
        tell(f"{', '.join(changed)} edited (or unreadable): the plain code runs, 8-14x slower")
    if plain or changed:
        yield False
        return
    plain_functions = {name: globals()[name] for name in FAST_FUNCTIONS}
    plain_methods = {name: vars(Value)[name] for name in FAST_METHODS}
    globals().update(FAST_FUNCTIONS)
    for name, method in FAST_METHODS.items():
        setattr(Value, name, method)
    # The fast graph has no reference cycles, so CPython frees it by reference counting alone,
    # and the collector only costs time. (The plain build_topo refers to itself, a cycle that
    # holds a whole graph until the collector runs.) PyPy needs its collector for everything.
    collector_was_on = gc.isenabled()
    if sys.implementation.name == "cpython":
        gc.disable()
    try:
        yield True
    finally:
        globals().update(plain_functions)
        for name, method in plain_methods.items():
            setattr(Value, name, method)
        if collector_was_on:
            gc.enable()


# Plumbing: the command line, saving and loading a model, a prompt, looking inside the model,
# and one clear line for anything a user can get wrong. Nothing here changes the algorithm.
import argparse  # noqa: E402
import errno  # noqa: E402
import json  # noqa: E402
import unicodedata  # noqa: E402
import urllib.error  # noqa: E402

# The run's own settings, besides those of the algorithm above
prompt = ""         # letters that every sample starts with (--prompt)
save_path = ""      # after training, save the model to this file (--save)
load_path = ""      # sample from this saved model instead of training (--load)
inspect_text = ""   # after sampling, show what the model does with this text (--inspect)
plain = False       # run the plain code as written, without the Efficiency section (--plain)
# After training, the mean loss on the last held_out documents of the shuffled list, which the
# run never trained on, and to compare, the mean loss on as many that it did train on
# (--held-out; 0: none; see held_out_report)
held_out = 200


# An argparse type: a finite int or float, at least low (or, if above, more than low). For text
# that is no number at all, argparse names the function: "invalid number value: 'abc'".
def number_type(kind, low, above=False):
    def number(text):
        value = kind(text)
        # (-inf < value < inf, not math.isfinite, which fails on an int too large for a float)
        if not (-math.inf < value < math.inf and (value > low if above else value >= low)):
            sign = ">" if above else ">="
            raise argparse.ArgumentTypeError(f"{text}: not a number {sign} {low}")
        return value
    return number


FLAGS = [  # each flag, the setting it sets, its placeholder in --help, its type, what it means
    ("--input", "input_path", "FILE", str, "training text, one document per line"),
    ("--seed", "seed", "N", int, "random seed"),
    ("--n-layer", "n_layer", "N", number_type(int, 1), "number of transformer layers"),
    ("--n-embd", "n_embd", "N", number_type(int, 1), "width of the embeddings"),
    ("--n-head", "n_head", "N", number_type(int, 1), "attention heads; must divide --n-embd"),
    ("--block-size", "block_size", "N", number_type(int, 1), "context size; longer names are cut"),
    ("--num-steps", "num_steps", "N", number_type(int, 0), "training steps, one document each"),
    ("--learning-rate", "learning_rate", "LR", number_type(float, 0), "learning rate at step 1"),
    ("--temperature", "temperature", "T", number_type(float, 0, True), "sampling temperature"),
    ("--num-samples", "num_samples", "N", number_type(int, 0), "names to sample after training"),
    ("--held-out", "held_out", "N", number_type(int, 0), "last documents, to score unseen"),
    ("--prompt", "prompt", "TEXT", str, "text that every sample starts with"),
    ("--save", "save_path", "FILE", str, "after training, save the model to this file"),
    ("--load", "load_path", "FILE", str, "sample from a saved model, without training"),
    ("--inspect", "inspect_text", "TEXT", str, "show what the model does with this text"),
]
SETTINGS = [setting for _, setting, _, _, _ in FLAGS] + ["plain", "advice"]  # what a run changes
SHAPE = ["n_layer", "n_embd", "n_head", "block_size"]  # a model file keeps these
TRAINING = ["input_path", "num_steps", "learning_rate", "save_path", "held_out"]  # not --load


# {setting: value} of each flag given; a usage error exits in here, with status 2
def parse_flags(argv):
    parser = argparse.ArgumentParser(prog="microgpt", argument_default=argparse.SUPPRESS)
    for flag, setting, metavar, kind, meaning in FLAGS:
        default = f" (default: {globals()[setting]})" if globals()[setting] != "" else ""
        parser.add_argument(flag, dest=setting, metavar=metavar, type=kind, help=meaning + default)
    parser.add_argument("--plain", action="store_true", help="run only the plain code (slower)")
    given = vars(parser.parse_args(argv))
    for flag, setting, _, _, _ in FLAGS:
        if given.get(setting) == "":  # a file name, a prompt or a text to inspect
            parser.error(f"{flag} must not be empty")
        if "load_path" in given and setting in given and setting in SHAPE + TRAINING:
            parser.error(f"{flag} cannot go with --load, which samples from a trained model")
    if given.get("n_embd", n_embd) % given.get("n_head", n_head):  # (--load takes neither)
        parser.error("--n-embd must be divisible by --n-head")
    return given


# A line on standard error. If there is none (None has no write), or it is full, nobody can be
# told, and the run goes on.
def tell(line):
    with contextlib.suppress(AttributeError, OSError):
        sys.stderr.write(f"microgpt: {line}\n")


# A name to write a new path to. It becomes path once the block ends without an error, and is
# removed otherwise: however this program fails, or if it is killed, path is never half-written,
# and an earlier file at path stays whole. (A crash of the whole system can still lose what the
# disk had not yet stored: that would take os.fsync.)
@contextlib.contextmanager
def whole_or_nothing(path):
    part = f"{path}.{os.getpid()}.part"  # each process its own, should two write path at once
    try:
        yield part
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)


# A model file: named fields in JSON. As in a nanoGPT checkpoint, the shape (model_args) and the
# weights by name (state_dict) are fields of their own.
MODEL_VERSION = 2  # the format's version (the earliest releases of this project wrote 1)
MODEL_FIELDS = ["microgpt", "model_args", "sampling", "uchars", "random_state", "state_dict"]


def save_model(path, uchars, state_dict):
    weights = {name: [[p.data for p in row] for row in mat] for name, mat in state_dict.items()}
    if not all(math.isfinite(x) for mat in weights.values() for row in mat for x in row):
        raise FloatingPointError("the trained weights are not all numbers")
    model = {"microgpt": MODEL_VERSION, "model_args": {name: globals()[name] for name in SHAPE},
             "sampling": {"temperature": temperature, "num_samples": num_samples},
             "uchars": "".join(uchars), "random_state": random.getstate(), "state_dict": weights}
    with whole_or_nothing(path) as part, open(part, "w", encoding="utf-8") as f:
        json.dump(model, f, indent=1)  # each float as repr writes it: exactly


# A model file as --save writes it: its settings, uchars and state_dict, and its random state,
# which it sets (as the saving run's sampling began, so that it draws the same names again).
# Here, in one place, its version, fields and shapes are checked; nothing in it is read as a
# command-line flag (its sampling settings are used as they are, unless a flag says otherwise).
def load_model(path):
    def check(ok, what):
        if not ok:
            sys.exit(f"microgpt: {path}: {what}")

    model = None  # unless it is JSON, in UTF-8, and not nested too deep to read:
    with open(path, encoding="utf-8") as f, contextlib.suppress(ValueError, RecursionError):
        model = json.load(f)
    check(isinstance(model, dict) and model.get("microgpt") == MODEL_VERSION,
          f"not a model file of format {MODEL_VERSION}: train and --save it again")
    check(sorted(model) == sorted(MODEL_FIELDS), f"the fields must be {', '.join(MODEL_FIELDS)}")
    _, args, sampling, uchars, state, found = (model[name] for name in MODEL_FIELDS)
    check(isinstance(args, dict) and sorted(args) == sorted(SHAPE)
          and all(type(args[name]) is int and args[name] > 0 for name in SHAPE)
          and args["n_embd"] % args["n_head"] == 0,
          f"model_args must be {', '.join(SHAPE)}: integers above 0, n_embd divisible by n_head")
    check(isinstance(sampling, dict) and sorted(sampling) == ["num_samples", "temperature"]
          and type(sampling["temperature"]) is float and 0 < sampling["temperature"] < math.inf
          and type(sampling["num_samples"]) is int and sampling["num_samples"] >= 0
          and isinstance(uchars, str) and uchars != "",
          "sampling (temperature above 0, num_samples) and uchars must be as --save writes them")
    try:  # as random.getstate() gave it
        random.setstate((state[0], tuple(state[1]), state[2]))
    except (TypeError, ValueError, IndexError, KeyError, OverflowError):
        check(False, "random_state is not a state of Python's random numbers")
    # {name: (rows, columns)} of each matrix, as init_params makes them, for no more layers than
    # the file holds (so that a file that claims a million layers costs nothing to check)
    n, vocab_size = args["n_embd"], len(uchars) + 1
    shapes = {"wte": (vocab_size, n), "wpe": (args["block_size"], n), "lm_head": (vocab_size, n)}
    for i in range(min(args["n_layer"], len(found) if isinstance(found, dict) else 0)):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes[f"layer{i}.{name}"] = (n, n)
        shapes[f"layer{i}.mlp_fc1"] = (4 * n, n)
        shapes[f"layer{i}.mlp_fc2"] = (n, 4 * n)
    # Each matrix: a list of rows, each a list of cols finite floats, as save_model writes them
    check(isinstance(found, dict) and sorted(found) == sorted(shapes) and all(
          isinstance(found[name], list) and len(found[name]) == rows and all(
              isinstance(row, list) and len(row) == cols
              and all(type(x) is float and math.isfinite(x) for x in row)
              for row in found[name]) for name, (rows, cols) in shapes.items()),
          "state_dict must hold the matrices of model_args's shape, of finite numbers")
    state_dict = {name: [[Value(x) for x in row] for row in found[name]] for name in shapes}
    return {**args, **sampling}, list(uchars), state_dict


# While it lasts, every name inference() makes up starts with the prompt. At the prompt's
# positions, gpt() runs as always, filling the KV cache, but its logits are replaced by ones that
# leave only the prompt's next letter possible (a logit of -inf is a probability of 0), so that
# inference() itself draws that letter.
@contextlib.contextmanager
def prompted(uchars, vocab_size):
    real_gpt = gpt

    def prompted_gpt(token_id, pos_id, keys, values, state_dict):
        logits = real_gpt(token_id, pos_id, keys, values, state_dict)
        if pos_id >= len(prompt):
            return logits
        forced = uchars.index(prompt[pos_id])
        return [Value(0.0 if t == forced else -math.inf) for t in range(vocab_size)]

    globals()["gpt"] = prompted_gpt
    try:
        yield
    finally:
        globals()["gpt"] = real_gpt


def width(text):  # how many columns text takes in a terminal: Hangul and CJK take two
    return len(text) + sum(unicodedata.east_asian_width(ch) in "WF" for ch in text)


# The forward pass of train() for one document, without training: its tokens, the probabilities
# gpt() gives at each position, each position's loss (-log p of the real next token), and their
# mean, the document's loss
def forward(doc, uchars, BOS, state_dict):
    tokens = [BOS] + [uchars.index(ch) for ch in doc] + [BOS]
    keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
    probs, losses = [], []
    for pos_id in range(min(block_size, len(tokens) - 1)):
        probs.append(softmax(gpt(tokens[pos_id], pos_id, keys, values, state_dict)))
        p = probs[-1][tokens[pos_id + 1]]
        if not p.data > 0:  # as train() checks
            raise FloatingPointError("a probability is 0 or not a number")
        losses.append(-p.log())
    return tokens, probs, losses, (1 / len(losses)) * sum(losses)


# What the model does with text, tokenized as training tokenizes a document: at each position,
# the probability of the real next token, its -log p and the likeliest tokens; their mean, which
# is the loss training computes; and the attention weights of each layer and head. It draws no
# random number and changes no weight. While it runs, softmax is replaced by one that also
# keeps each result: for each position, gpt() calls it for each layer and head in turn, then
# forward() once more.
def inspect_model(text, uchars, BOS, state_dict):
    recorded, real_softmax = [], softmax

    def shown(token_id):  # BOS as BOS, a space as ␣, a tab as \t, ...
        ch = uchars[token_id] if token_id < BOS else "BOS"
        return "␣" if ch == " " else ch if ch.isprintable() else repr(ch)[1:-1]

    # A row of cells, each padded to col columns: the widest token's (BOS at least), computed
    # once, as the default value of col
    def line(*cells, col=max(4, max(width(shown(t)) for t in range(BOS + 1)))):
        print("  ".join(cell + " " * (col - width(cell)) for cell in cells).rstrip())

    # (The tables count on gpt() calling softmax for attention only, once per layer and head)
    def recording_softmax(logits):
        recorded.append(real_softmax(logits))
        return recorded[-1]

    globals()["softmax"] = recording_softmax
    try:
        tokens, probs, losses, loss = forward(text, uchars, BOS, state_dict)
    finally:
        globals()["softmax"] = real_softmax
    print(f"\n--- inspect {text!r}: what the model expects after each token ---")
    line("seen", "next", "p(next)", "-log p", "likeliest next tokens")
    for pos_id, loss_t in enumerate(losses):
        p = [prob.data for prob in probs[pos_id]]  # this position's probabilities, as floats
        top = sorted(range(BOS + 1), key=lambda t: -p[t])[:5]
        likeliest = [cell for t in top for cell in (shown(t), f"{p[t]:.3f}")]
        line(shown(tokens[pos_id]), shown(tokens[pos_id + 1]), f"{p[tokens[pos_id + 1]]:7.4f}",
             f"{loss_t.data:6.4f}", *likeliest)
    print(f"mean -log p: {loss.data:.4f} (the loss training computes for this document)")
    per_position = n_layer * n_head + 1  # the softmaxes of each position
    for li in range(n_layer):
        for h in range(n_head):
            print(f"\nattention, layer {li}, head {h}: how much each row takes from each column")
            line("", *(shown(t) for t in tokens[:len(losses)]))
            # this head's weights at each position: every per_position-th softmax, from its first
            for i, weights in enumerate(recorded[li * n_head + h::per_position]):
                line(shown(tokens[i]), *(f"{w.data:.2f}" for w in weights))
    return loss.data  # (for the tests, which check it to the last bit)


# After training: the mean loss on documents the run never trained on, and to compare, the mean
# loss on as many that it did train on, the last ones it saw (both on the scale of the step
# lines). Close numbers mean that the model learned what names are like; a much lower second
# number, that it learned its training names by heart. Training takes docs[0], docs[1], ...,
# one a step, so the last held_out documents of the shuffled list are never trained on, unless
# --num-steps reaches them, and they are the same for every --num-steps: runs can be compared
# on them.
def held_out_report(docs, uchars, BOS, state_dict):
    k = min(held_out, len(docs))  # the held-out documents are docs[-k:]
    if num_steps > len(docs) - k:  # training took docs[0], docs[1], ..., docs[num_steps - 1]
        return f"no held-out loss: training reached the last {k} documents (see --held-out)"
    trained = docs[max(0, num_steps - k):num_steps]  # the last k (or fewer) it trained on

    def mean_loss(part):  # the mean over part of the loss train() computes for a document
        # (forward()'s fourth result is the document's loss)
        return sum(forward(doc, uchars, BOS, state_dict)[3].data for doc in part) / len(part)

    held = mean_loss(docs[-k:])
    report = f"mean loss on {k} documents never trained on (the list's last): {held:.4f}"
    if not trained:
        return report
    return f"{report}; on the {len(trained)} it trained on last: {mean_loss(trained):.4f}"


# What main() advises, should the numbers blow up: training's advice, until run() changes it
# for sampling and what comes after
advice = "try a smaller --learning-rate"


# The post's program, in its order, with the settings of the flags or of a model file
def run(given):
    global advice
    docs, step_losses = [], []
    if save_path:  # can the model be saved there? Check now, not after training
        check_save_path()
    if load_path:
        settings, uchars, state_dict = load_model(load_path)  # and the random state
        globals().update({**settings, **given})  # the file's settings, unless a flag says else
        BOS, vocab_size = len(uchars), len(uchars) + 1
    if not load_path or "seed" in given:
        random.seed(seed)
    if not load_path:
        docs = load_docs(input_path)
        if not docs:
            sys.exit(f"microgpt: {input_path}: no documents: it is empty, or only blank lines")
        uchars, BOS, vocab_size = tokenizer(docs)
    for flag, text in (("--prompt", prompt), ("--inspect", inspect_text)):
        unknown = [ch for ch in text if ch not in uchars]
        if unknown:
            sys.exit(f"microgpt: {flag} {text!r}: {unknown[0]!r} is not one of the model's "
                     f"characters, {''.join(uchars)!r}")
    if len(prompt) > block_size:
        sys.exit(f"microgpt: --prompt {prompt!r} has {len(prompt)} characters, and the model's "
                 f"context (--block-size) only {block_size}")

    if not load_path:
        state_dict, params = init_params(vocab_size)
        step_losses = train(docs, uchars, BOS, state_dict, params)
        if save_path:
            save_model(save_path, uchars, state_dict)
    # Nothing calls backward() from here on, so dot() need not record the graph: if the
    # Efficiency section is in place, its dot_without_graph() stands in (till efficiency() puts
    # the plain dot() back, as the run ends)
    if dot is fused_dot:
        globals()["dot"] = dot_without_graph
    advice = "try a larger --temperature"
    with prompted(uchars, vocab_size):
        samples = inference(uchars, BOS, vocab_size, state_dict)
    advice = "the model's weights are too large (train it with a smaller --learning-rate)"
    if step_losses:
        tell(f"mean loss by twentieths of training: {trend(step_losses)}")
    if docs and held_out:
        tell(held_out_report(docs, uchars, BOS, state_dict))
    if step_losses and samples:
        # (a model that learned names by heart makes up many names it has seen)
        known = [sample for sample in samples if sample in docs]
        tell(f"samples also in the input file: {', '.join(known) or 'none'}")
    if inspect_text:
        inspect_model(inspect_text, uchars, BOS, state_dict)


# --save's path, checked before training: an existing folder or device cannot be replaced by a
# file, and a file that cannot be written there (no such folder, no permission) is tried out
def check_save_path():
    if os.path.exists(save_path) and not os.path.isfile(save_path):
        sys.exit(f"microgpt: --save {save_path}: a folder or a device, not a file")
    try:
        open(f"{save_path}.{os.getpid()}.part", "w").close()  # the name whole_or_nothing writes
        os.remove(f"{save_path}.{os.getpid()}.part")
    except OSError as e:
        sys.exit(f"microgpt: --save {save_path}: {reason(e)}")


# One step's loss is one name's, so it jumps about; the mean of many steps says more. The mean
# of each twentieth of the steps (or of each step, if fewer), the first and the last as numbers.
def trend(step_losses):
    n, parts = len(step_losses), min(20, len(step_losses))
    chunks = [step_losses[i * n // parts:(i + 1) * n // parts] for i in range(parts)]
    means = [sum(chunk) / len(chunk) for chunk in chunks]
    spark = "".join("▁▂▃▄▅▆▇█"[round(7 * (m - min(means)) / (max(means) - min(means) or 1))]
                    for m in means)
    return f"{means[0]:.4f} {spark} {means[-1]:.4f}"


REASONS = {errno.ENOENT: "no such file or folder", errno.EACCES: "permission denied",
           errno.EISDIR: "a folder, not a file", errno.ENOSPC: "no space left on the disk",
           errno.ENOTDIR: "a file where a folder should be"}


def reason(e):  # an OSError in our own words, the same on every system
    return REASONS.get(e.errno, errno.errorcode.get(e.errno, type(e).__name__))


# Run microgpt with the flags in argv (else the command line's). Anything a user can get wrong
# ends in one line on standard error (after argparse's usage line, for a flag) and an exit status
# other than 0; a bug keeps its traceback. Every setting is put back afterwards; the random
# numbers drawn stay drawn.
def main(argv=None):
    settings = {name: globals()[name] for name in SETTINGS}
    status = 1
    try:
        given = parse_flags(argv)
        globals().update(given)
        with efficiency(plain):
            run(given)
        sys.stdout.flush()  # so that a full or closed output fails here, not as Python exits
        return
    except BrokenPipeError:  # the reader has gone (as in | head): stop, quietly, with the status
        sys.exit(141)  # a shell shows for a program that SIGPIPE (13) stopped: 128 + 13
    except KeyboardInterrupt:
        message, status = "interrupted", 130
    except MemoryError:
        message = "out of memory: try a smaller --n-layer, --n-embd or --block-size"
    except (FloatingPointError, OverflowError) as e:
        what = e if isinstance(e, FloatingPointError) else "a number too large for a float"
        message = f"{what}: {advice}"
    except UnicodeError as e:  # reading input that is not UTF-8, or writing a letter that the
        # output's encoding lacks (a terminal in ASCII, say)
        message = f"{input_path}: not UTF-8 text" if isinstance(e, UnicodeDecodeError) else (
            f"the output cannot show {e.object[e.start]!r}: set PYTHONIOENCODING=utf-8")
    except urllib.error.URLError:  # no connection, an HTTP error, or cut off; an OSError too
        message = f"cannot download {names_url}: try --input FILE"
    except OSError as e:
        # (a failed write, as to a full disk, names no file)
        message = f"{e.filename}: {reason(e)}" if e.filename else reason(e)
    finally:
        globals().update(settings)
        try:
            sys.stdout.flush()
        except OSError:  # full or closed: as Python's documentation advises for SIGPIPE, point
            # it at devnull, so that Python's own flush as it exits does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    tell(message)
    sys.exit(status)


if __name__ == "__main__":
    # Pasted into a Jupyter or Colab notebook's cell, the file runs here too, but then sys.argv
    # holds the kernel's own arguments (ipykernel_launcher.py -f kernel.json), not flags for us
    main([] if sys.argv[0].endswith("kernel_launcher.py") else None)
