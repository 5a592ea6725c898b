/* make check: preloaded after libasan into the lua5.4 that runs the specs.
 *
 * At startup it removes LD_PRELOAD (and the sanitizer's options) from the
 * environment, so that the programs the specs start (sh, ip, true, bin/isle,
 * ...) run without the sanitizer: their own leaks are not ours, and an
 * uninstrumented lua5.4 loading the ASan build of isle.core would abort. The
 * sanitizer has read its options by now.
 *
 * It also loads ISLE_ASAN_PIN (the ASan isle.core) with RTLD_NODELETE, so that
 * lua_close's dlclose does not unload it before LeakSanitizer runs at exit:
 * leak reports then name isle.core's functions instead of "<unknown module>".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void scrub_env(void)
{
  const char *pin = getenv("ISLE_ASAN_PIN");
  if (pin && !dlopen(pin, RTLD_NOW | RTLD_NODELETE))
    fprintf(stderr, "scrub_env: %s\n", dlerror());
  unsetenv("ISLE_ASAN_PIN");
  unsetenv("LD_PRELOAD");
  unsetenv("ASAN_OPTIONS");
  unsetenv("LSAN_OPTIONS");
}
