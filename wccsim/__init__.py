"""wccsim: bit-accurate integer simulator and cost model for Wavelet Compressed Convolution hardware."""

__version__ = "0.1.0"
