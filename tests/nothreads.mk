# make nothreads: read after nginx's objs/Makefile (its CC, CFLAGS and
# ALL_INCS), checks that every module source that includes nginx
# compiles without thread pools (an nginx built without --with-threads:
# NGX_THREADS 0), as it does with them.

# two compilers at a time (xargs -P 2: 2 cores); the first failure
# stops it (exit 255)
nothreads:
	@printf '%s\n' $(NOTHREADS_SRCS) | xargs -P 2 -I {} sh -c \
	    '$(CC) -fsyntax-only -DNGX_THREADS=0 $(CFLAGS) $(ALL_INCS) {} \
	     || { echo "nothreads: {} does not compile without NGX_THREADS"; \
	          exit 255; }'
	@echo "nothreads: $(words $(NOTHREADS_SRCS)) files compile without NGX_THREADS"
