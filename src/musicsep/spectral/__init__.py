"""The one STFT (framing, overlap-add), the model features and the Wiener filter."""
