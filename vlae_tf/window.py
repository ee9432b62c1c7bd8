"""The decoder's window: the one place that turns `window=(A, B)` into a layer plan.

Chen et al. (2017), Sec. 3 / App.: a window "A x B" is the A-wide, B-tall rectangle of
pixels directly above pixel (i, j), plus the ceil((A-1)/2) pixels directly to its left:

    W(i, j) = {(r, c): i-B <= r <= i-1, |c-j| <= (A-1)/2}
            U {(i, c): j-(A-1)/2 <= c <= j-1}                  (clipped at the borders)

The decoder realises exactly this set with a gated PixelCNN (van den Oord et al. 2016):

* The **vertical stack** sees only rows strictly above. Its first layer is a
  `(first_height x 2*first_half_width+1)` convolution of the image, shifted down one
  row; every later layer l is a `(1 + row_growth[l]) x (2*col_growth[l]+1)` convolution
  that looks at the current and earlier rows of the stack's own features. The rectangle
  therefore grows to height `first_height + sum(row_growth)` = B and half-width
  `first_half_width + sum(col_growth)` = (A-1)/2 exactly.
* The **horizontal stack** sees the `left` pixels to the left of (i, j), through a
  `1 x left` convolution of the image shifted right by one pixel, in its first layer only.
  Later layers are 1x1 in the horizontal stack and receive the vertical stack at the same
  position through 1x1 links. (A wider horizontal kernel in a later layer would pull in
  vertical-stack features from columns left of the rectangle and break exactness.)

Growth is spread over layers like a stack of 3x3 masked convolutions (at most one row and
one column each side per layer, as in the paper's PixelCNN decoders); whatever the stack
cannot absorb goes into the first layer, which acts on the few-channel image and is cheap.
A global window (`window=None`) is the window (2W-1, H): it covers all of x_{<i} exactly.

A is usually odd. An even A (the paper's CIFAR "4x2") is read literally from the formula:
the rectangle is floor((A-1)/2) columns each side wide and the row has ceil((A-1)/2) pixels
to the left, e.g. 4x2 = a 3-wide, 2-tall rectangle plus 2 pixels to the left.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Kernel sizes of the windowed gated PixelCNN, derived from a window."""

    width: int  # A
    height: int  # B (rows above)
    left: int  # pixels to the left in the current row: ceil((A-1)/2)
    first_height: int  # rows above seen by the first vertical layer
    first_half_width: int  # columns each side seen by the first vertical layer
    row_growth: Tuple[int, ...]  # extra rows added by vertical layers 1..L-1
    col_growth: Tuple[int, ...]  # extra columns each side added by vertical layers 1..L-1

    @property
    def half_width(self) -> int:
        return (self.width - 1) // 2

    @property
    def num_layers(self) -> int:
        return 1 + len(self.row_growth)

    @property
    def sees_above(self) -> bool:
        return self.height > 0

    @property
    def sees_left(self) -> bool:
        return self.left > 0

    @property
    def is_empty(self) -> bool:
        """An empty window: the decoder is factorised given z (no autoregression)."""
        return not (self.sees_above or self.sees_left)


def _window_int(value) -> int:
    """An int (or integral float, e.g. from JSON) as an int; anything else a ValueError.
    int() alone would truncate (5.7, 3) to (5, 3): a different model without a word."""
    if isinstance(value, str):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or not float(value).is_integer():
        raise ValueError(value)
    return int(value)


def validate_window(window, name: str = "window") -> Optional[Tuple[int, int]]:
    """Checks a user-supplied window and returns it as a tuple (A, B), or None (global)."""
    if window is None:
        return None
    if isinstance(window, str):
        text = window.lower().strip()
        if text in ("none", "global"):
            return None
        try:
            width_text, height_text = text.split("x")
            window = (int(width_text), int(height_text))
        except ValueError:
            raise ValueError(
                f"{name}: expected 'AxB' (e.g. '5x3'), 'global' or a pair (A, B); "
                f"got {window!r}") from None
    try:
        width, height = (_window_int(value) for value in window)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a pair of ints (A, B), 'AxB' or None; got {window!r}") from None
    if width < 1:
        raise ValueError(f"{name}: A (the width) must be an int >= 1; got A={width}")
    if height < 0:
        raise ValueError(f"{name}: B (the height) must be an int >= 0; got B={height}")
    return (width, height)


def resolve_window(window, image_height: int, image_width: int) -> Tuple[int, int]:
    """Returns the concrete (A, B); `None` (global) becomes (2W-1, H), i.e. all of x_{<i}."""
    window = validate_window(window)
    if window is None:
        return (2 * image_width - 1, image_height)
    return window


def plan_window(window, num_layers: int, image_height: int, image_width: int) -> WindowPlan:
    """Distributes the window's growth over `num_layers` gated layers (see module doc)."""
    if int(num_layers) < 1:
        raise ValueError(f"num_layers: expected an int >= 1; got {num_layers!r}")
    width, height = resolve_window(window, image_height, image_width)
    # Nothing beyond the image can be seen, so clip the kernels to the image's size.
    height = min(height, image_height)
    half_width = min((width - 1) // 2, image_width - 1)
    left = math.ceil(min(width - 1, 2 * (image_width - 1)) / 2)
    left = min(left, image_width - 1)
    later_layers = num_layers - 1

    if height == 0:
        first_height, row_growth = 0, [0] * later_layers
        first_half_width, col_growth = 0, [0] * later_layers
    else:
        # The first vertical layer must see at least the row directly above.
        grown_rows = min(later_layers, height - 1)
        row_growth = [1] * grown_rows + [0] * (later_layers - grown_rows)
        first_height = height - grown_rows
        grown_cols = min(later_layers, half_width)
        col_growth = [1] * grown_cols + [0] * (later_layers - grown_cols)
        first_half_width = half_width - grown_cols
    return WindowPlan(
        width=width, height=height, left=left,
        first_height=first_height, first_half_width=first_half_width,
        row_growth=tuple(row_growth), col_growth=tuple(col_growth))


def window_mask(window, image_height: int, image_width: int, row: int, col: int) -> np.ndarray:
    """Reference set W(row, col) as a boolean [H, W] array (what tests compare against)."""
    width, height = resolve_window(window, image_height, image_width)
    half_width = (width - 1) // 2
    left = math.ceil((width - 1) / 2)
    mask = np.zeros((image_height, image_width), dtype=bool)
    rows = slice(max(row - height, 0), row)
    cols = slice(max(col - half_width, 0), min(col + half_width + 1, image_width))
    mask[rows, cols] = True
    mask[row, max(col - left, 0):col] = True
    return mask


def describe(window: Optional[Sequence[int]]) -> str:
    if window is None:
        return "global"
    return f"{window[0]}x{window[1]}"


# --------------------------------------------------------------- the masked stack's field
def masked_stack_offsets(num_layers: int, kernel_size: int = 3):
    """Offsets (dr, dc) the output of a masked PixelCNN stack may depend on.

    One mask-A k x k layer, then `num_layers - 1` mask-B layers (van den Oord et al.
    2016a): mask A covers the rows above the centre and the pixels left of it, mask B also
    the centre. The field is their Minkowski sum. For 3x3 kernels and L layers: L rows
    above; in the row k above (k = 1..L), columns -L .. +k; in the current row, L pixels
    to the left. For L = 6 that is 69 pixels, with the upper-right "blind spot" of the
    original PixelCNN (e.g. (-1, +2) precedes the pixel but is outside the field).
    """
    if int(num_layers) < 1:
        raise ValueError(f"num_layers: expected an int >= 1; got {num_layers!r}")
    half = kernel_size // 2
    mask_a = {(dr, dc) for dr in range(-half, 1) for dc in range(-half, half + 1)
              if dr < 0 or dc < 0}
    mask_b = mask_a | {(0, 0)}
    field = set(mask_a)
    for _ in range(int(num_layers) - 1):
        field = {(r1 + r2, c1 + c2) for r1, c1 in field for r2, c2 in mask_b}
    return sorted(field)


def masked_stack_mask(num_layers: int, image_height: int, image_width: int, row: int,
                      col: int, kernel_size: int = 3) -> np.ndarray:
    """The masked stack's field at (row, col) as a boolean [H, W] array (clipped)."""
    mask = np.zeros((image_height, image_width), dtype=bool)
    for d_row, d_col in masked_stack_offsets(num_layers, kernel_size):
        r, c = row + d_row, col + d_col
        if 0 <= r < image_height and 0 <= c < image_width:
            mask[r, c] = True
    return mask
