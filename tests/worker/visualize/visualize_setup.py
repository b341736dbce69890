"""The input size and preprocessing every visualization test runs at (64 px: small and fast,
large enough for the objectives to climb)."""

from shared.spec.model import Preprocessing

SIZE = 64
PREP = Preprocessing(input_size=SIZE, resize=SIZE)
