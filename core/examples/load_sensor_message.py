"""Load what core/examples/sensor_message.rs wrote: the pickle and its out-of-band buffers.

    python core/examples/load_sensor_message.py DIR
"""

import pathlib
import pickle
import pickletools
import sys

import numpy as np

folder = pathlib.Path(sys.argv[1])
data = (folder / "pickle.bin").read_bytes()
# Received buffers: bytearrays standing in for the memory the link delivered the bytes into.
received = [bytearray((folder / f"buffer{i}.bin").read_bytes())
            for i in range(len(list(folder.glob("buffer*.bin"))))]

pickletools.dis(data)
msg = pickle.loads(data, buffers=[pickle.PickleBuffer(b) for b in received])
adc = msg["adc"]
print({k: v for k, v in msg.items() if k != "adc"})
print(adc)
print(f"adc: dtype {adc.dtype.str}, shape {adc.shape}, writeable {adc.flags.writeable}, "
      f"shares memory with the received buffer: {np.shares_memory(adc, received[0])}")
expected = np.array([[100 * c + i % 100 - 50 for c in range(4)] for i in range(1024)], dtype="<i2")
assert np.array_equal(adc, expected), "samples differ"
assert np.shares_memory(adc, received[0]) and not adc.flags.writeable
print("ok: every sample as the device wrote it, zero-copy")
