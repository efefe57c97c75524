// JPEG (libjpeg-turbo) and PNG (libpng) decoding to 8-bit RGB. See include/cimage.h.
#include "cimage.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static void set_error(vzq_image *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof out->error, fmt, ap);
    va_end(ap);
    for (char *p = out->error; *p; p++) {
        if (*p == '\n' || *p == '\r') *p = ' ';
    }
}

// Checks width × height against the pixel limit and the RGB buffer size against size_t; 0 if acceptable.
static int check_dimensions(uint64_t width, uint64_t height, uint64_t max_pixels, vzq_image *out) {
    if (width == 0 || height == 0) {
        set_error(out, "image has zero size (%llux%llu)", (unsigned long long)width, (unsigned long long)height);
        return -1;
    }
    uint64_t pixels = width * height;  // both < 2^32, so no overflow
    if (pixels > max_pixels) {
        out->over_limit = 1;
        set_error(out, "image is %llux%llu = %llu pixels, over the limit of %llu pixels",
                  (unsigned long long)width, (unsigned long long)height, (unsigned long long)pixels,
                  (unsigned long long)max_pixels);
        return -1;
    }
    if (pixels > (uint64_t)SIZE_MAX / 8) {
        set_error(out, "image is %llux%llu, too large for this machine", (unsigned long long)width,
                  (unsigned long long)height);
        return -1;
    }
    return 0;
}

void vzq_image_free(vzq_image *image) {
    if (image && image->pixels) {
        free(image->pixels);
        image->pixels = NULL;
    }
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    vzq_image *out;
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_err *err = (jpeg_err *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    err->base.format_message(cinfo, buffer);
    set_error(err->out, "JPEG: %s", buffer);
    longjmp(err->jump, 1);
}

// Warnings (level -1) about corrupt data are fatal: a truncated file must not decode to a grey image.
static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA) return;  // common in camera files, harmless
    jpeg_fail(cinfo);
}

// EXIF orientation (tag 0x0112) from an APP1 "Exif\0\0" segment; 0 if absent or malformed.
static int exif_orientation(const uint8_t *p, size_t n) {
    if (n < 14 || memcmp(p, "Exif\0\0", 6) != 0) return 0;
    const uint8_t *t = p + 6;
    size_t tn = n - 6;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 0;
#define RD16(q) (le ? (uint32_t)((q)[0] | ((q)[1] << 8)) : (uint32_t)(((q)[0] << 8) | (q)[1]))
#define RD32(q) (le ? ((uint32_t)(q)[0] | ((uint32_t)(q)[1] << 8) | ((uint32_t)(q)[2] << 16) | ((uint32_t)(q)[3] << 24)) \
                    : (((uint32_t)(q)[0] << 24) | ((uint32_t)(q)[1] << 16) | ((uint32_t)(q)[2] << 8) | (uint32_t)(q)[3]))
    if (RD16(t + 2) != 42) return 0;
    uint32_t ifd = RD32(t + 4);
    if (ifd > tn || tn - ifd < 2) return 0;
    uint32_t count = RD16(t + ifd);
    for (uint32_t i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > tn) return 0;
        if (RD16(t + e) == 0x0112) {
            uint32_t v = RD16(t + e + 8);
            return (v >= 1 && v <= 8) ? (int)v : 0;
        }
    }
    return 0;
#undef RD16
#undef RD32
}

// All state that must survive a longjmp back into vzq_decode_jpeg lives here (not in locals that setjmp may clobber).
typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    uint8_t *pixels;
    uint8_t *row;
} jpeg_state;

static int decode_jpeg(jpeg_state *s, const uint8_t *data, size_t size, uint64_t max_pixels, vzq_image *out) {
    struct jpeg_decompress_struct *cinfo = &s->cinfo;
    cinfo->err = jpeg_std_error(&s->err.base);
    s->err.base.error_exit = jpeg_fail;
    s->err.base.emit_message = jpeg_message;
    s->err.out = out;
    if (setjmp(s->err.jump)) return -1;

    jpeg_create_decompress(cinfo);
    if (size > (size_t)(unsigned long)-1) {
        set_error(out, "JPEG: file too large");
        return -1;
    }
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(cinfo, TRUE);

    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1) {
            int o = exif_orientation(m->data, m->data_length);
            if (o) {
                out->exif_orientation = o;
                break;
            }
        }
    }
    if (check_dimensions(cinfo->image_width, cinfo->image_height, max_pixels, out) != 0) return -1;

    int cmyk = 0;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo->out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        set_error(out, "JPEG: unsupported colour space %d with %d components", (int)cinfo->jpeg_color_space,
                  cinfo->num_components);
        return -1;
    }
    // PIL's settings: accurate integer IDCT, fancy (smooth) chroma upsampling.
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);

    uint32_t w = cinfo->output_width, h = cinfo->output_height;
    if (check_dimensions(w, h, max_pixels, out) != 0) return -1;
    int comps = cinfo->output_components;
    if ((cmyk && comps != 4) || (!cmyk && comps != 3)) {
        set_error(out, "JPEG: decoder produced %d components", comps);
        return -1;
    }
    s->pixels = malloc((size_t)w * h * 3);
    s->row = malloc((size_t)w * 4);
    if (!s->pixels || !s->row) {
        set_error(out, "out of memory for a %ux%u image", w, h);
        return -1;
    }
    // Adobe CMYK JPEGs (what Photoshop and PIL write) store inverted values.
    int inverted = cmyk && cinfo->saw_Adobe_marker;
    while (cinfo->output_scanline < h) {
        uint32_t y = cinfo->output_scanline;
        JSAMPROW rows[1] = { cmyk ? s->row : s->pixels + (size_t)y * w * 3 };
        if (jpeg_read_scanlines(cinfo, rows, 1) != 1) {
            set_error(out, "JPEG: decoder stopped at row %u of %u", y, h);
            return -1;
        }
        if (cmyk) {
            uint8_t *dst = s->pixels + (size_t)y * w * 3;
            for (uint32_t x = 0; x < w; x++) {
                int v[4];
                for (int c = 0; c < 4; c++) v[c] = inverted ? 255 - s->row[4 * x + c] : s->row[4 * x + c];
                int nk = 255 - v[3];
                for (int c = 0; c < 3; c++) {
                    int t = v[c] * nk + 128;  // round(v[c] * nk / 255), as PIL's cmyk2rgb
                    dst[3 * x + c] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
                }
            }
        }
    }
    jpeg_finish_decompress(cinfo);
    out->width = w;
    out->height = h;
    out->pixels = s->pixels;
    s->pixels = NULL;
    return 0;
}

int vzq_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, vzq_image *out) {
    memset(out, 0, sizeof *out);
    jpeg_state *s = calloc(1, sizeof *s);
    if (!s) {
        set_error(out, "out of memory");
        return -1;
    }
    int rc = decode_jpeg(s, data, size, max_pixels, out);
    jpeg_destroy_decompress(&s->cinfo);
    free(s->pixels);
    free(s->row);
    free(s);
    return rc;
}

// MARK: - PNG

typedef struct {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size;
    size_t pos;
    vzq_image *out;
    uint8_t *pixels;      // final RGB
    uint8_t *raw;         // decoded rows as libpng gives them (RGB or RGBA, 8-bit)
    png_bytep *rows;
} png_state;

static void png_read_mem(png_structp png, png_bytep dst, png_size_t n) {
    png_state *s = png_get_io_ptr(png);
    if (n > s->size - s->pos) png_error(png, "file is truncated");
    memcpy(dst, s->data + s->pos, n);
    s->pos += n;
}

static void png_fail(png_structp png, png_const_charp msg) {
    png_state *s = png_get_error_ptr(png);
    set_error(s->out, "PNG: %s", msg);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;  // warnings (e.g. unknown ancillary chunks, bad iCCP) do not stop decoding, as in PIL
}

static int decode_png(png_state *s, uint64_t max_pixels, int alpha_mode) {
    vzq_image *out = s->out;
    if (s->size < 8 || png_sig_cmp(s->data, 0, 8) != 0) {
        set_error(out, "not a PNG file (bad signature)");
        return -1;
    }
    // The bomb guard runs on the IHDR bytes themselves, before libpng reads any further chunk.
    if (s->size >= 24 && memcmp(s->data + 12, "IHDR", 4) == 0) {
        const uint8_t *p = s->data + 16;
        uint32_t w = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        uint32_t h = ((uint32_t)p[4] << 24) | ((uint32_t)p[5] << 16) | ((uint32_t)p[6] << 8) | p[7];
        if (check_dimensions(w, h, max_pixels, out) != 0) return -1;
    }
    s->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, s, png_fail, png_warn);
    if (!s->png) {
        set_error(out, "PNG: cannot create the decoder");
        return -1;
    }
    s->info = png_create_info_struct(s->png);
    if (!s->info) {
        set_error(out, "PNG: cannot create the decoder");
        return -1;
    }
    if (setjmp(png_jmpbuf(s->png))) return -1;

    png_set_read_fn(s->png, s, png_read_mem);
    // The header's dimensions are checked against max_pixels below; these keep libpng's own limits out of the way
    // for images that are long and thin but small, while bounding text/metadata chunks.
    png_set_user_limits(s->png, 0x7fffffff, 0x7fffffff);
    png_set_chunk_malloc_max(s->png, 64u << 20);
    png_read_info(s->png, s->info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(s->png, s->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    if (check_dimensions(w, h, max_pixels, out) != 0) return -1;

    if (depth == 16) png_set_strip_16(s->png);  // high byte, as PIL
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(s->png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(s->png);
    if (png_get_valid(s->png, s->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(s->png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(s->png);
    png_set_interlace_handling(s->png);
    png_read_update_info(s->png, s->info);

    int channels = png_get_channels(s->png, s->info);
    size_t rowbytes = png_get_rowbytes(s->png, s->info);
    if ((channels != 3 && channels != 4) || png_get_bit_depth(s->png, s->info) != 8 ||
        rowbytes != (size_t)w * (size_t)channels) {
        set_error(out, "PNG: unexpected layout after conversion (%d channels, %zu bytes a row)", channels, rowbytes);
        return -1;
    }
    s->raw = malloc(rowbytes * h);
    s->rows = malloc(sizeof(png_bytep) * h);
    if (!s->raw || !s->rows) {
        set_error(out, "out of memory for a %ux%u image", (unsigned)w, (unsigned)h);
        return -1;
    }
    for (png_uint_32 y = 0; y < h; y++) s->rows[y] = s->raw + (size_t)y * rowbytes;
    png_read_image(s->png, s->rows);
    png_read_end(s->png, NULL);

    if (channels == 3) {
        s->pixels = s->raw;
        s->raw = NULL;
    } else {
        s->pixels = malloc((size_t)w * h * 3);
        if (!s->pixels) {
            set_error(out, "out of memory for a %ux%u image", (unsigned)w, (unsigned)h);
            return -1;
        }
        size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *src = s->raw + 4 * i;
            uint8_t *dst = s->pixels + 3 * i;
            if (alpha_mode == VZQ_ALPHA_OVER_BLACK || alpha_mode == VZQ_ALPHA_OVER_WHITE) {
                // PIL's ImageAlphaComposite over an opaque background b, 7-bit fixed point:
                // (src·a + b·(255−a)) / 255, rounded as SHIFTFORDIV255.
                int a = src[3];
                int back = alpha_mode == VZQ_ALPHA_OVER_WHITE ? 255 * (255 - a) : 0;
                for (int c = 0; c < 3; c++) {
                    int t = (src[c] * a + back) * 128 + 128 * 128;
                    dst[c] = (uint8_t)(((((t >> 8) + t) >> 8)) >> 7);
                }
            } else {
                dst[0] = src[0];
                dst[1] = src[1];
                dst[2] = src[2];
            }
        }
    }
    out->width = w;
    out->height = h;
    out->pixels = s->pixels;
    s->pixels = NULL;
    return 0;
}

int vzq_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, int alpha_mode, vzq_image *out) {
    memset(out, 0, sizeof *out);
    png_state *s = calloc(1, sizeof *s);
    if (!s) {
        set_error(out, "out of memory");
        return -1;
    }
    s->data = data;
    s->size = size;
    s->out = out;
    int rc = decode_png(s, max_pixels, alpha_mode);
    if (s->png) png_destroy_read_struct(&s->png, s->info ? &s->info : NULL, NULL);
    free(s->pixels);
    free(s->raw);
    free(s->rows);
    free(s);
    return rc;
}
