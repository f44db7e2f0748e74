"""Recurrent LSTM attention over the CNN feature map (Saednia et al. 2020, after Ba et al. 2014
and Xu et al. 2015).

A crude classification branch (GAP + linear over I_C) gives the first class-probability vector
p_0; the LSTM state starts from the mean feature (Xu et al.). At each of T steps, attention
scores over the h·w cells come from the cell features, the LSTM hidden state and the previous
probabilities: e = v·tanh(W_f f_i + W_h h + W_p p); softmax over cells gives the weights a_t;
the context z_t = Σ a_t,i f_i and p_{t-1} feed the LSTM; its hidden state gives the step's
logits (p_t = sigmoid, as the paper's multi-label output). The last step's logits are the
model's output. `training_outputs(x)` also returns the crude branch's logits, which training
supervises too: Saednia et al. trained the classification branch (MobileNet + GAP + sigmoid
layer) with its own loss before the attention branch; supervising both at once gives the
backbone that direct signal (a MobileNetV2 trained through the last step alone learned slowly).

Intrinsic maps: `attention_maps(x)` = {"steps": (B, T, h, w), "mean": (B, h, w)};
`class_maps(x)` repeats "mean" over the C classes (the attention is not class-specific).
Parameters: steps (T, 3), hidden_size (16, the paper's LSTM output size), attention_size (64).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medattn.models.backbones import Backbone
from medattn.models.base import MedattnModel, check_int


class RecurrentAttentionModel(MedattnModel):
    """Backbone I_C → T steps of LSTM attention (see the module docstring) → last step's logits."""

    name = "recurrent"
    defaults = {"steps": 3, "hidden_size": 16, "attention_size": 64}

    def __init__(self, backbone: Backbone, num_classes: int, steps: int, hidden_size: int,
                 attention_size: int):
        params = {"steps": check_int(self.name, "steps", steps),
                  "hidden_size": check_int(self.name, "hidden_size", hidden_size),
                  "attention_size": check_int(self.name, "attention_size", attention_size)}
        super().__init__(backbone, num_classes, params)
        channels, hidden, inner = backbone.channels[-1], params["hidden_size"], params["attention_size"]
        self.crude = nn.Linear(channels, num_classes)
        self.init_hidden = nn.Linear(channels, hidden)
        self.init_cell = nn.Linear(channels, hidden)
        self.attend_features = nn.Linear(channels, inner)
        self.attend_hidden = nn.Linear(hidden, inner)
        self.attend_probs = nn.Linear(num_classes, inner)
        self.score = nn.Linear(inner, 1)
        self.lstm = nn.LSTMCell(channels + num_classes, hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def unroll(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-step logits (B, T, C), attention weights (B, T, h, w) and the crude branch's
        logits (B, C)."""
        features = self.backbone(x)[-1]
        cells = features.flatten(2).transpose(1, 2)
        mean = cells.mean(dim=1)
        crude = self.crude(mean)
        probs = torch.sigmoid(crude)
        state = (torch.tanh(self.init_hidden(mean)), torch.tanh(self.init_cell(mean)))
        keys = self.attend_features(cells)
        logits, weights = [], []
        for _ in range(self.params["steps"]):
            query = self.attend_hidden(state[0]) + self.attend_probs(probs)
            a = torch.softmax(self.score(torch.tanh(keys + query[:, None])).squeeze(2), dim=1)
            context = (a[:, :, None] * cells).sum(dim=1)
            state = self.lstm(torch.cat([context, probs], dim=1), state)
            logits.append(self.classifier(state[0]))
            probs = torch.sigmoid(logits[-1])
            weights.append(a.view(len(x), *features.shape[2:]))
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1), crude

    def forward(self, x: Tensor) -> Tensor:
        return self.unroll(x)[0][:, -1]

    def training_outputs(self, x: Tensor) -> list[Tensor]:
        """Logits that training supervises: the last step's (the output) and the crude branch's."""
        steps, _, crude = self.unroll(x)
        return [steps[:, -1], crude]

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        steps = self.unroll(x)[1]
        return {"steps": steps, "mean": steps.mean(dim=1)}

    def class_maps(self, x: Tensor) -> Tensor:
        mean = self.unroll(x)[1].mean(dim=1)
        return mean[:, None].expand(-1, self.num_classes, -1, -1)
