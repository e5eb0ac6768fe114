"""The multi-agent transformer's network (imported only when a ``mat`` learner is built).

Encoder: the m agents' observations are tokens; self-attention over agents gives each a
representation and a value V(o^i | o^1..o^m). Decoder: token i is agent i-1's action (token 0
a start symbol); causally masked self-attention over the action tokens, then attention over the
encoder's representations, gives agent i's logits — so agent i's policy depends on every
observation and on the actions of agents 0..i-1 only. Acting decodes agent by agent (each
sampled action becomes the next token); training feeds the taken actions (teacher forcing)
and gets all m logits in one pass.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from agentd.algorithms.onpolicy.policy import CategoricalHead, ortho_linear


@functools.cache
def _categorical(n_actions: int) -> CategoricalHead:
    """A categorical head used for its distribution math only (never trained)."""
    return CategoricalHead(1, n_actions)


class MatNet(nn.Module):
    """Encoder-decoder over agents: (B, m, d) observations -> values, logits."""

    def __init__(self, m: int, obs_dim: int, n_actions: int, width: int, heads: int,
                 blocks: int) -> None:
        super().__init__()
        self.m, self.n_actions = m, n_actions
        self.obs_embed = nn.Sequential(nn.LayerNorm(obs_dim), nn.Linear(obs_dim, width),
                                       nn.GELU())
        self.act_embed = nn.Sequential(nn.Linear(n_actions + 1, width), nn.GELU())
        self.pos = nn.Parameter(torch.zeros(m, width))
        layer = {"d_model": width, "nhead": heads, "dim_feedforward": width, "dropout": 0.0,
                 "batch_first": True, "norm_first": True}
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), blocks,
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), blocks)
        self.value_head = nn.Sequential(nn.LayerNorm(width), ortho_linear(width, 1, 1.0))
        self.logit_head = nn.Sequential(nn.LayerNorm(width), ortho_linear(width, n_actions, 0.01))
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(m),
                             persistent=False)

    @property
    def head(self) -> CategoricalHead:
        """The categorical distribution math (sampling, log-probs, entropy, KL) of the logits."""
        return _categorical(self.n_actions)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(representations (B, m, width), values (B, m))."""
        rep = self.encoder(self.obs_embed(x) + self.pos)
        return rep, self.value_head(rep).squeeze(-1)

    def tokens(self, act: torch.Tensor) -> torch.Tensor:
        """Decoder input for actions (B, m): [start, one-hot a^0, ..., one-hot a^{m-2}]."""
        start = torch.zeros(*act.shape[:-1], 1, self.n_actions + 1)
        start[..., 0, self.n_actions] = 1.0
        prev = nn.functional.one_hot(act[..., :-1].long(), self.n_actions + 1).float()
        return torch.cat([start, prev], -2)

    def decode(self, rep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, k, n_actions) of the first k agents given k action tokens."""
        k = tokens.shape[-2]
        h = self.act_embed(tokens) + self.pos[:k]
        return self.logit_head(self.decoder(h, rep, tgt_mask=self.causal[:k, :k],
                                            tgt_is_causal=True))

    def forward(self, x: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: every agent's logits given the taken actions, in one pass."""
        rep, _ = self.encode(x)
        return self.decode(rep, self.tokens(act))

    def sample(self, x: torch.Tensor, draw) -> tuple[torch.Tensor, torch.Tensor]:
        """Autoregressive acting: (actions (B, m), logits (B, m, n_actions)); ``draw(logits)``
        samples one action per row. Agent i is decoded after agents 0..i-1 have acted."""
        rep, _ = self.encode(x)
        act = torch.zeros(x.shape[0], self.m, dtype=torch.int64)
        logits = torch.zeros(x.shape[0], self.m, self.n_actions)
        for i in range(self.m):
            logits[:, i] = self.decode(rep, self.tokens(act)[:, :i + 1])[:, i]
            act[:, i] = draw(logits[:, i])
        return act, logits
