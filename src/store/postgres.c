/* store/postgres — placeholder while the backend is written: refuses clearly. */
#include "store/store_int.h"

int gw_postgres_open(const char *url, struct gw_store **out, struct gw_errbuf *eb)
{
    (void)url;
    *out = NULL;
    gw_errbuf_set(eb, "the PostgreSQL backend is not available in this version; use sqlite:PATH");
    return GW_EUNSUPP;
}
