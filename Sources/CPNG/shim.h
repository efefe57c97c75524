// libpng 1.6 from Debian's libpng-dev (pkg-config name "libpng").
#include <png.h>
