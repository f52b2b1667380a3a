"""The shape of one convolution layer: the one shape type the cost model, traces and workloads share."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wccsim.rules import kept_positions, padded_shape

__all__ = ["LayerKind", "LayerShape"]


class LayerKind(enum.Enum):
    CONV1X1 = "conv1x1"
    CONV = "conv"
    DWCONV = "dwconv"


@dataclass(frozen=True)
class LayerShape:
    """Shape of one convolution layer (input spatial size h x w; 'same' padding).

    Attributes
    ----------
    name : str
    kind : LayerKind
    cin, cout : int
        Input and output channels.
    kernel, stride, groups, dilation : int
        Square kernel side, stride, channel groups, dilation (dilation does not change the counts).
    h, w : int
        Input height and width in pixels.
    keep_fp : bool
        The paper keeps this layer in full precision (first conv, classifier's last 1x1).
    """
    name: str
    kind: LayerKind
    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int
    h: int
    w: int
    dilation: int = 1
    keep_fp: bool = False

    @classmethod
    def pointwise(cls, name: str, cin: int, cout: int, h: int, w: int, stride: int = 1) -> "LayerShape":
        """A dense 1x1 convolution of an h x w input map (a traced or spliced layer)."""
        return cls(name=name, kind=LayerKind.CONV1X1, cin=int(cin), cout=int(cout), kernel=1, stride=int(stride),
                   groups=1, h=int(h), w=int(w))

    @property
    def ho(self) -> int:
        """Output height, ceil(h / stride)."""
        return -(-self.h // self.stride)

    @property
    def wo(self) -> int:
        """Output width, ceil(w / stride)."""
        return -(-self.w // self.stride)

    @property
    def macs(self) -> int:
        """Multiply-accumulates: cout * (cin / groups) * kernel^2 * ho * wo."""
        return self.cout * (self.cin // self.groups) * self.kernel ** 2 * self.ho * self.wo

    def wcc_grid(self, levels: int) -> tuple[int, int]:
        """Padded (hp, wp) of the map WCC transforms: the ho x wo input a stride leaves (`rules.padded_shape`)."""
        return padded_shape(self.ho, self.wo, levels)

    def wcc_kept(self, rate, levels: int) -> int:
        """Positions WCC keeps at ``rate`` on `wcc_grid` (`rules.kept_positions`)."""
        hp, wp = self.wcc_grid(levels)
        return kept_positions(rate, hp * wp)

    @property
    def is_pointwise(self) -> bool:
        """A dense 1x1 convolution: the layers WCC replaces (a stride subsamples its input first, so
        WCC works on the ho x wo map, as the datapath does)."""
        return self.kind is LayerKind.CONV1X1 and self.groups == 1
