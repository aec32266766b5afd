"""Readers for the annotation formats datasets are released in; one module per family.

Each turns the released files into a :class:`~motionmae.data.lists.VideoList` (absolute video
paths, integer labels, class names in label order) and checks that the videos are on disk:

* :mod:`.ssv2`: Something-Something v2 (labels JSON + train/validation/test JSON lists);
* :mod:`.kinetics`: Kinetics-400/600/700 (CSV with youtube_id, time_start, time_end);
* :mod:`.ucf101`: UCF101 (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``);
* :mod:`.hmdb51`: HMDB51 (``<class>_test_split<N>.txt`` with 0/1/2 ids);
* :mod:`.finegym`: FineGym Gym99/Gym288 element lists and category files;
* :mod:`.diving48`: Diving48 V2 JSON lists and vocabulary.

A dataset is named by a spec string ``FORMAT:PATH[,key=value...]`` (:mod:`.spec`), accepted
wherever a list file is.
"""

from motionmae.data.formats._common import (
    AnnotationError,
    DatasetFormat,
    MissingVideosError,
    VideoFinder,
)
from motionmae.data.formats.spec import (
    FORMATS,
    DatasetSpec,
    DatasetSpecError,
    looks_like_spec,
    parse_spec,
    read_dataset,
    video_folder,
)

__all__ = [
    "FORMATS",
    "AnnotationError",
    "DatasetFormat",
    "DatasetSpec",
    "DatasetSpecError",
    "MissingVideosError",
    "VideoFinder",
    "looks_like_spec",
    "parse_spec",
    "read_dataset",
    "video_folder",
]
