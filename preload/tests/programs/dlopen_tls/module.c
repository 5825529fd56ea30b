/* The module dlopen_tls.c loads after its green threads exist, built twice by the harness:
 * with -DMODEL='"global-dynamic"' (its TLS is allocated per thread on first use) and with
 * -DMODEL='"initial-exec"' (its TLS sits in the static TLS block of every thread, which the
 * loader initialises only in the threads it knows). Each thread must see the initial image and
 * zeroed .tbss, and keep its own values. */
#define TLS __thread __attribute__((tls_model(MODEL)))

TLS int tls_init = 4242;            /* .tdata */
TLS long tls_image[4] = {1, 2, 3, 4}; /* .tdata */
TLS long tls_zero[64];              /* .tbss */

/* The thread's view: the initial values must be intact (1 for yes). */
int module_fresh(void)
{
    long sum = 0;
    for (int i = 0; i < 64; i++)
        sum |= tls_zero[i];
    return tls_init == 4242 && tls_image[0] == 1 && tls_image[3] == 4 && sum == 0;
}

void module_set(long v)
{
    tls_init = (int)v;
    tls_image[0] = v + 1;
    for (int i = 0; i < 64; i++)
        tls_zero[i] = v * 64 + i;
}

/* 1 if the thread's values are those module_set(v) wrote. */
int module_kept(long v)
{
    for (int i = 0; i < 64; i++)
        if (tls_zero[i] != v * 64 + i)
            return 0;
    return tls_init == (int)v && tls_image[0] == v + 1 && tls_image[3] == 4;
}

void *module_addr(void) { return &tls_zero[0]; }
