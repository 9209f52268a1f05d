"""Fixtures of the project's HIL tests beyond the dmapickle plugin's (which starts every target:
`dmapickle_start`, `dmapickle_target`, `dmapickle_stream`)."""
import pytest

from builds import firmware_elf
from feed import Feed


@pytest.fixture
def elf(request):
    """The QEMU firmware ELF of this run: --dmapickle-firmware, else the default build."""
    return request.config.getoption("dmapickle_firmware") or firmware_elf()


@pytest.fixture
def feeder():
    """Factory: `feeder(target)` runs dmapickle-hil-feeder on a QEMU target's UART socket, with
    its PSRAM file (if any) mapped as region 2; every feeder is stopped when the test ends."""
    feeds = []

    def start(target, **kwargs):
        shared = target.psram is not None
        feed = Feed(str(target.sock), region_id=2 if shared else None,
                    region_path=target.psram if shared else None, **kwargs)
        feeds.append(feed)
        return feed

    yield start
    for feed in feeds:
        feed.close()
