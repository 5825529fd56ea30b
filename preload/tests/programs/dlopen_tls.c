/* dlopen after green threads exist: thread 0 loads two modules with __thread data while seven
 * other threads are alive (one global-dynamic, one initial-exec, whose TLS lives in every
 * thread's static TLS block), then every thread, those created before and after the load,
 * checks that it sees the modules' initial TLS image (.tdata copied, .tbss zero), writes its own
 * values and keeps them across yields and sleeps (which may move it to another carrier). The
 * global-dynamic module is loaded by bare name, found through the executable's RUNPATH
 * ($ORIGIN): a dlopen wrapper must keep the caller's identity for the search path. A failing
 * dlopen must report its error through dlerror() on the calling thread. */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#define EARLY 8
#define LATE 4
#define ROUNDS 20

struct module {
    const char *path;
    void *handle;
    int (*fresh)(void);
    void (*set)(long);
    int (*kept)(long);
    void *(*addr)(void);
};

static struct module mods[2] = {
    {.path = "libdltls_gd.so"},   /* bare name: the executable's RUNPATH */
    {.path = "./libdltls_ie.so"}, /* initial-exec TLS */
};
static pthread_barrier_t live, loaded;
static uintptr_t addrs[EARLY + LATE][2];

static void load(void)
{
    CHECK(dlopen("./libdltls_missing.so", RTLD_NOW) == NULL, "a missing module loaded");
    const char *err = dlerror();
    CHECK(err != NULL && strstr(err, "libdltls_missing.so") != NULL,
          "dlerror() after a failed dlopen: %s", err ? err : "(null)");
    for (int m = 0; m < 2; m++) {
        struct module *mod = &mods[m];
        mod->handle = dlopen(mod->path, RTLD_NOW | RTLD_LOCAL);
        CHECK(mod->handle != NULL, "dlopen(%s): %s", mod->path, dlerror());
        *(void **)&mod->fresh = dlsym(mod->handle, "module_fresh");
        *(void **)&mod->set = dlsym(mod->handle, "module_set");
        *(void **)&mod->kept = dlsym(mod->handle, "module_kept");
        *(void **)&mod->addr = dlsym(mod->handle, "module_addr");
        CHECK(mod->fresh && mod->set && mod->kept && mod->addr, "dlsym in %s", mod->path);
    }
}

/* Every thread: fresh image, own values kept across switches, own addresses. */
static void use_modules(long id)
{
    for (int m = 0; m < 2; m++) {
        CHECK(mods[m].fresh(), "thread %ld: %s's TLS is not its initial image", id, mods[m].path);
        mods[m].set(id * 10 + m);
        addrs[id][m] = (uintptr_t)mods[m].addr();
    }
    for (int r = 0; r < ROUNDS; r++) {
        if (r % 2)
            sched_yield();
        else
            usleep(200);
        for (int m = 0; m < 2; m++)
            CHECK(mods[m].kept(id * 10 + m), "thread %ld round %d: %s's TLS changed", id, r,
                  mods[m].path);
    }
}

static void *early(void *arg)
{
    long id = (long)arg;
    pthread_barrier_wait(&live);
    if (id == 0)
        load();
    pthread_barrier_wait(&loaded);
    use_modules(id);
    return NULL;
}

static void *late(void *arg)
{
    use_modules((long)arg);
    return NULL;
}

int main(void)
{
    uint64_t h = MIX_INIT;
    pthread_t t[EARLY + LATE];
    CHECK_RC(pthread_barrier_init(&live, NULL, EARLY));
    CHECK_RC(pthread_barrier_init(&loaded, NULL, EARLY));
    for (long i = 0; i < EARLY; i++)
        CHECK_RC(pthread_create(&t[i], NULL, early, (void *)i));
    for (int i = 0; i < EARLY; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    printf("loaded while %d threads lived; each saw the initial TLS and kept its own\n", EARLY);
    for (long i = EARLY; i < EARLY + LATE; i++)
        CHECK_RC(pthread_create(&t[i], NULL, late, (void *)i));
    for (int i = EARLY; i < EARLY + LATE; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    printf("%d threads created after the load too\n", LATE);
    /* The main thread (a glibc thread under the preload too) sees the initial image. */
    for (int m = 0; m < 2; m++)
        CHECK(mods[m].fresh(), "main: %s's TLS is not its initial image", mods[m].path);
    /* Threads alive at the same time (the early ones, then the late ones) had their own. */
    for (int i = 0; i < EARLY + LATE; i++)
        for (int j = i < EARLY ? 0 : EARLY; j < i; j++)
            for (int m = 0; m < 2; m++)
                CHECK(addrs[i][m] != addrs[j][m], "threads %d and %d share %s's TLS", i, j,
                      mods[m].path);
    for (int m = 0; m < 2; m++) {
        h = mix(h, (uint64_t)mods[m].kept(0));
        CHECK(dlclose(mods[m].handle) == 0, "dlclose(%s): %s", mods[m].path, dlerror());
    }
    printf("every thread's module TLS was its own\n");
    finish(h);
    return 0;
}
