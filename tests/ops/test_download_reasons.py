import pytest

from ops.download import REASONS, classify_error


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        ("success", None, ""),
        ("failed_to_download", "HTTP Error 404: Not Found", "http_client_error"),
        ("failed_to_download", "HTTP Error 503: Service Unavailable", "http_server_error"),
        (
            "failed_to_download",
            "HTTP Error 302: The HTTP server returned a redirect error that would lead to an infinite loop.",
            "redirect_error",
        ),
        ("failed_to_download", "The read operation timed out", "timeout"),
        ("failed_to_download", "<urlopen error [Errno 111] Connection refused>", "connection_error"),
        ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive", "opt_out"),
        ("failed_to_resize", "Image decoding error", "not_an_image"),
        ("failed_to_resize", "image too small", "image_too_small"),
        ("failed_to_resize", "decompression bomb: 40000x40000 > 89478485 pixels", "decompression_bomb"),
        ("failed_to_download", "<urlopen error blocked non-public address: h resolves to 10.0.0.1>", "private_address"),
        ("failed_to_resize", "aspect ratio too large", "bad_aspect_ratio"),
        ("failed_to_download", "download deadline exceeded: 60 s", "deadline_exceeded"),
        ("failed_to_download", "<urlopen error download deadline exceeded: 60 s>", "deadline_exceeded"),
        ("failed_to_download", "response body too large: 999999999 bytes declared", "body_too_large"),
        ("failed_to_download", "refused by X-Robots-Tag: otherbot: noai", "opt_out"),
        ("failed_to_resize", "not an image: no size can be read from its header", "not_an_image"),
        (
            "failed_to_resize",
            "OpenCV(4.14.0) loadsave.cpp:79: error: (-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS",
            "decompression_bomb",
        ),
        ("failed_to_download", "something new", "download_error"),
    ],
)
def test_errors_map_to_the_fixed_vocabulary(status, message, reason):
    assert classify_error(status, message) == reason
    assert reason == "" or reason in REASONS
