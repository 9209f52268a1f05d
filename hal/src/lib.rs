//! DMA regions, buffer ownership while in flight, links and the frame publisher for dmapickle
//! devices.
#![no_std]
#![deny(missing_docs)]
