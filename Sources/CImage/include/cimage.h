// CImage: JPEG and PNG decoding for vzquant, entirely in C.
//
// libjpeg reports fatal errors by longjmp; longjmp must never cross Swift frames, so each decode call does all of
// its libjpeg / libpng work (including setjmp) inside one C function and returns a status plus a one-line message.
// The output is always 8-bit interleaved RGB, rows top to bottom, allocated with malloc; free it with
// vzq_image_free. Dimensions are checked against max_pixels before any pixel buffer is allocated.
#ifndef VZQ_CIMAGE_H
#define VZQ_CIMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    VZQ_ALPHA_DROP = 0,            // RGBA → RGB by discarding alpha (PIL's convert("RGB"); transformers 4.x)
    VZQ_ALPHA_OVER_BLACK = 1,      // composited over black (RGB × alpha / 255)
    VZQ_ALPHA_OVER_WHITE = 2,      // composited over white, bit-exact with PIL's alpha_composite (transformers 5.x)
};

typedef struct vzq_image {
    uint32_t width;
    uint32_t height;
    uint8_t *pixels;              // width * height * 3 bytes, RGB
    int exif_orientation;         // JPEG: EXIF orientation tag 1…8 if present, else 0 (not applied here)
    int over_limit;               // 1 when the error is the caller's pixel limit (not a broken file)
    char error[200];              // set when a decode function returns non-zero
} vzq_image;

/// Decodes a JPEG held in memory. Returns 0 on success. Any libjpeg warning about corrupt or missing data is
/// treated as an error (truncated files fail instead of decoding to grey), except extraneous bytes before a marker.
int vzq_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, vzq_image *out);

/// Decodes a PNG held in memory (any bit depth, colour type, interlacing). alpha_mode is one of VZQ_ALPHA_*. 16-bit samples keep their high byte (as libpng's png_set_strip_16 and PIL do).
int vzq_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, int alpha_mode, vzq_image *out);

void vzq_image_free(vzq_image *image);

#ifdef __cplusplus
}
#endif

#endif
