/* HTTP reason phrases, for the servers that build responses by hand (h2o wants one per response). */
#ifndef TOLLGATE_HTTP_STATUS_H
#define TOLLGATE_HTTP_STATUS_H

/* The standard phrase of a status code ("Too Many Requests"), or a generic one for unusual codes. */
const char *tg_http_reason(int status);

#endif
