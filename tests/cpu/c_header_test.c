/* The C ABI header compiles as C and its functions link from a C program. */
#include <stdio.h>
#include <string.h>

#include "epcomm/epcomm.h"

int main(void) {
  epcomm_buffer_options_t options;
  epcomm_buffer_t buffer = NULL;
  epcomm_buffer_options_init(&options);
  options.rank = 3; /* out of range for one rank */
  if (epcomm_buffer_create(&options, NULL, NULL, &buffer) != EPCOMM_ERROR_INVALID_ARGUMENT)
    return 1;
  if (strlen(epcomm_last_error_message()) == 0) return 2;
  if (epcomm_get_low_latency_buffer_size_hint(128, 7168, 8, 256) <= 0) return 3;
  printf("c abi ok: %s (%s)\n", epcomm_version(), epcomm_last_error_message());
  return 0;
}
